#!/usr/bin/env python3
"""CPU per message of one worker forwarding each value to a topic sink, in-process.

``bench/worker_inproc.py`` for ``_eos_app`` (decode the JSON value, yield it to the
agent's topic sink): a real :class:`supervisor.instance.worker.Worker` with stand-in
rings and the app's real producer to a real broker (at-least-once: no transaction). A
pass ends when every record is done, i.e. its output was delivered. Prints wall,
process CPU (all threads: the producer's poll thread and librdkafka's) and the loop
thread's CPU per message, best of ``--repeat``; ``--profile`` prints a pyinstrument
profile of one pass. This is the worker's share of ``bench/eos.py``'s at-least-once
contestant, without the supervisor and the rings.

``--eos``: the worker under ``processing_guarantee = "exactly_once"`` instead (its
``agentd_eos`` share): the app's producer transactional, the group metadata of a real
consumer in the pass's group, a commit every ``--interval`` seconds (the worker's own
cycle), and a pass ends when the last transaction committed (every ACK released). It
also prints the transactions committed and the seconds spent quiescing and in the
commit calls.

    .venv/bin/python bench/sink_inproc.py [-n 100000] [--repeat 3] [--quick]
        [--profile] [--bootstrap H:P] [--eos [--interval S]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("BENCH_TOPIC", "bench-input")

import _common as c
from worker_inproc import _Inbound, _Outbound

PARTITIONS = 8


def group_metadata(bootstrap: str, group: str, topic: str) -> tuple[Any, bytes]:
    """A consumer that joined ``group`` on ``topic``, and its group metadata (what the
    supervisor sends an instance under exactly once); the caller closes it."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no assignment in group {group}")
        consumer.poll(0.1)
    return consumer, consumer.consumer_group_metadata()


async def one_pass(records: list[bytes], eos: dict[str, Any] | None = None
                   ) -> tuple[float, float, float]:
    """(wall, process CPU, loop-thread CPU) seconds for ``records`` through a worker;
    ``eos``: the worker's exactly-once settings (then ``eos["txn"]`` is its
    Transactions, for the caller's report)."""
    import _eos_app

    import agentlib.seam as seam
    from supervisor.instance.worker import READ_BATCH, Worker, tune_gc

    tune_gc()
    agent = _eos_app.forward
    worker = Worker.__new__(Worker)
    # What Worker.__init__ does, minus attaching rings (as worker_inproc.py).
    worker.inbound = _Inbound(records, READ_BATCH)  # type: ignore[assignment]
    worker.outbound = _Outbound()  # type: ignore[assignment]
    worker.agent, worker.name = agent, agent.name
    worker.settings = {"agent": agent.name, "topics": [_eos_app.TOPIC]}
    worker.topics = [_eos_app.TOPIC]
    worker.topic_index = {_eos_app.TOPIC: 0}
    worker.max_in_flight = 4096
    worker._raw_record, worker._verdict = seam.new_raw_record, seam.ErrorVerdict
    worker.host = seam.AgentHost(agent, on_done=worker.on_done, on_error=worker.on_error)
    worker.tables = None
    worker.txn = None
    if eos is not None:
        from supervisor.instance.transactions import Transactions

        worker.settings.update(eos)
        worker.txn = eos["txn"] = Transactions.install(agent, worker.settings)
        worker.txn.group_metadata = eos["group_metadata"]
    worker._fed, worker._done, worker._done_by_name, worker._outbox = {}, {}, {}, []
    worker._flush_scheduled = worker._throttled = worker._stopping = False
    worker.processed, worker._producer, worker._tasks = 0, None, set()
    worker._loop = asyncio.get_running_loop()
    worker._exit = worker._loop.create_future()
    await worker.host.start()
    await worker.warm_producer()
    total = len(records)
    if worker.txn is not None:  # as Worker.main: the transactions start before the records
        worker.txn.start()
    start, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
    if worker.txn is not None:
        worker._loop.call_later(worker.txn.interval, worker._transaction_due)
    if worker.txn is not None:
        # The worker drives itself, as in its process (a throttled or quiescing pump is
        # resumed by its on_done or its commit): this loop only waits, off the CPU, so
        # the process CPU is the worker's (spinning here cost as much as a busy loop).
        worker.pump()
        while worker.processed < total or worker.txn.acks:
            await asyncio.sleep(0.001)
    while worker.processed < total:
        if worker.inbound.pos < total and not worker._throttled:
            worker.pump()
        await asyncio.sleep(0)
    result = (time.perf_counter() - start, time.process_time() - cpu,
              time.thread_time() - thread)
    await worker.host.stop(5.0)
    worker.flush_acks()
    return result


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("-n", type=int, default=100_000)
    cli.add_argument("--repeat", type=int, default=3)
    cli.add_argument("--bootstrap", default=os.environ.get("BENCH_BOOTSTRAP"))
    cli.add_argument("--profile", action="store_true")
    cli.add_argument("--quick", action="store_true", help="20k records, 2 passes")
    cli.add_argument("--eos", action="store_true", help="under exactly_once (see above)")
    cli.add_argument("--interval", type=float, default=1.0,
                     help="--eos: commit_interval, seconds (default 1, agentd's)")
    args = cli.parse_args()
    if args.profile:
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            sys.exit("sink_inproc: --profile needs pyinstrument (pip install pyinstrument)")
    if args.quick:
        args.n, args.repeat = min(args.n, 20_000), min(args.repeat, 2)
    from supervisor.transport import wire

    rng = random.Random(1)
    records = [wire.encode_record(0, i % PARTITIONS, i // PARTITIONS, 1_764_000_000_000 + i,
                                  f"key-{i % 1000}".encode(), c.json_value(i, rng), None)
               for i in range(args.n)]
    import uvloop

    passes: list[tuple[float, float, float]] = []
    txns: list[Any] = []
    with c.broker(args.bootstrap) as bootstrap:
        os.environ["AGENTD_BROKER"] = bootstrap
        for _ in range(1 if args.profile else args.repeat):
            app_id = c.unique("bench-sink-inproc")
            os.environ["BENCH_APP_ID"] = app_id
            os.environ["BENCH_SINK"] = f"{app_id}-out"
            sys.modules.pop("_eos_app", None)
            c.create_topic(bootstrap, f"{app_id}-out", PARTITIONS)
            eos: dict[str, Any] | None = None
            consumer = None
            if args.eos:  # a real group, so the offsets commit with a real generation
                os.environ["BENCH_TOPIC"] = f"{app_id}-in"
                c.create_topic(bootstrap, f"{app_id}-in", PARTITIONS)
                consumer, metadata = group_metadata(bootstrap, app_id, f"{app_id}-in")
                eos = {"exactly_once": True, "commit_interval": args.interval,
                       "transactional_id": app_id, "group_id": app_id,
                       "group_metadata": metadata}
            try:
                if args.profile:
                    from pyinstrument import Profiler

                    profiler = Profiler(interval=0.0005)
                    profiler.start()
                    uvloop.run(one_pass(records, eos))
                    profiler.stop()
                    print(profiler.output_text(unicode=False, color=False, show_all=False))
                    return
                passes.append(uvloop.run(one_pass(records, eos)))
            finally:
                if eos is not None:
                    txns.append(eos.get("txn"))
                    if eos.get("txn") is not None:
                        eos["txn"].close()
                if consumer is not None:
                    consumer.close()
    per: dict[str, Any] = {name: round(min(p[i] for p in passes) / args.n * 1e6, 2)
                           for i, name in enumerate(("wall", "cpu", "loop_cpu"))}
    mode = f"exactly once, commit_interval {args.interval:g} s" if args.eos else "at least once"
    print(f"sink in-process ({mode}): {per['wall']} us/message wall, {per['cpu']} us CPU "
          f"(all threads), {per['loop_cpu']} us CPU on the loop thread (n={args.n})")
    out: dict[str, Any] = {"bench": "sink_inproc", "messages": args.n, "eos": args.eos,
                           "us_per_msg": per["wall"], "cpu_us_per_msg": per["cpu"],
                           "loop_cpu_us_per_msg": per["loop_cpu"]}
    if args.eos:
        out["commit_interval_s"] = args.interval
        out["passes"] = [{"transactions": t.commits, "quiesce_s": round(t.quiesce_s, 3),
                          "commit_s": round(t.commit_s, 3)} for t in txns if t is not None]
        for index, row in enumerate(out["passes"]):
            print(f"  pass {index + 1}: {row['transactions']} transactions, "
                  f"{row['quiesce_s']} s quiescing, {row['commit_s']} s in the commit calls")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
