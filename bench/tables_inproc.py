#!/usr/bin/env python3
"""CPU per message of one worker counting by key in a table, in-process.

``bench/worker_inproc.py`` for ``_tables_app`` (``counts[event.key] += 1``): a real
:class:`supervisor.instance.worker.Worker` with stand-in rings, its real table runtime
(:class:`supervisor.instance.tables.InstanceTables`: RocksDB shards in a temporary
``table_dir``, the changelog producer to a real broker). N records over 10,000 keys on 8
partitions; a pass ends when every record is done, i.e. its changelog write was
delivered. Prints wall, process CPU (all threads: the producer's poll thread and
librdkafka's) and the loop thread's CPU per message, best of ``--repeat``. CPU is what
a busy shared machine disturbs least: compare trees by it, not by ``bench/tables.py``'s
short runs.

    .venv/bin/python bench/tables_inproc.py [-n 100000] [--repeat 3] [--quick]
        [--profile] [--bootstrap H:P] [--max-in-flight N]

``--profile`` prints a pyinstrument profile of one pass (as ``bench/sink_inproc.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("BENCH_TOPIC", "bench-input")

import _common as c
from worker_inproc import _Inbound, _Outbound

KEYS = 10_000
PARTITIONS = 8


MAX_IN_FLIGHT = 4096  # the agent's max_in_flight (--max-in-flight)


async def one_pass(records: list[bytes], table_dir: str) -> tuple[float, float, float]:
    """(wall, process CPU, loop-thread CPU) seconds for ``records`` through a worker."""
    import _tables_app

    import agentlib.seam as seam
    from supervisor.instance.tables import InstanceTables
    from supervisor.instance.worker import READ_BATCH, Worker, tune_gc

    tune_gc()
    agent = _tables_app.count
    worker = Worker.__new__(Worker)
    # What Worker.__init__ does, minus attaching rings (as worker_inproc.py).
    worker.inbound = _Inbound(records, READ_BATCH)  # type: ignore[assignment]
    worker.outbound = _Outbound()  # type: ignore[assignment]
    worker.agent, worker.name = agent, agent.name
    worker.settings = {"agent": agent.name, "topics": [_tables_app.TOPIC]}
    worker.topics = [_tables_app.TOPIC]
    worker.topic_index = {_tables_app.TOPIC: 0}
    worker.max_in_flight = MAX_IN_FLIGHT
    worker._raw_record, worker._verdict = seam.new_raw_record, seam.ErrorVerdict
    worker.host = seam.AgentHost(agent, on_done=worker.on_done, on_error=worker.on_error)
    worker.tables = InstanceTables.install(  # (a tree before the write-back cache: no bound)
        agent, table_dir, None,
        **({"max_in_flight": MAX_IN_FLIGHT} if MAX_IN_FLIGHT != 4096 else {}))
    worker.txn = None  # at-least-once: no transactions in this bench
    worker._fed, worker._done, worker._done_by_name, worker._outbox = {}, {}, {}, []
    worker._flush_scheduled = worker._throttled = worker._stopping = False
    worker.processed, worker._producer, worker._tasks = 0, None, set()
    worker._loop = asyncio.get_running_loop()
    worker._exit = worker._loop.create_future()
    await worker.host.start()
    await worker.warm_producer()
    assert worker.tables is not None
    for partition in range(PARTITIONS):  # opened (and recovered: empty) before the clock
        worker.tables.open_partition(partition)
    total = len(records)
    start, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
    while worker.processed < total:
        if worker.inbound.pos < total and not worker._throttled:
            worker.pump()
            await asyncio.sleep(0)
        else:
            # Throttled (the worker's own on_done pumps again) or all fed: wait as a
            # real worker does, not spinning: a spin would bill this loop's CPU for time
            # spent waiting on deliveries (a write-back window waits for its flush).
            await asyncio.sleep(0.001)
    result = (time.perf_counter() - start, time.process_time() - cpu,
              time.thread_time() - thread)
    await worker.host.stop(5.0)
    worker.flush_acks()
    window = getattr(worker.tables.runtime, "window", None)
    if window is not None:
        print(f"  {window.flushes} flushes, {window.rows_produced / total:.3f} changelog rows "
              f"per record", file=sys.stderr)
    worker.tables.close()
    return result


def main() -> None:
    global MAX_IN_FLIGHT
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("-n", type=int, default=100_000)
    cli.add_argument("--repeat", type=int, default=3)
    cli.add_argument("--bootstrap", default=os.environ.get("BENCH_BOOTSTRAP"))
    cli.add_argument("--profile", action="store_true")
    cli.add_argument("--quick", action="store_true", help="20k records, 2 passes")
    cli.add_argument("--max-in-flight", type=int, default=4096,
                     help="the agent's max_in_flight (the flush window is half of it)")
    args = cli.parse_args()
    MAX_IN_FLIGHT = args.max_in_flight
    if args.profile:
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            sys.exit("tables_inproc: --profile needs pyinstrument (pip install pyinstrument)")
    if args.quick:
        args.n, args.repeat = min(args.n, 20_000), min(args.repeat, 2)
    from supervisor.transport import wire

    rng = random.Random(1)
    records = [wire.encode_record(0, i % PARTITIONS, i // PARTITIONS, 1_764_000_000_000 + i,
                                  c.key_of(i, KEYS), c.json_value(i, rng), None)
               for i in range(args.n)]
    import uvloop

    passes: list[tuple[float, float, float]] = []
    with c.broker(args.bootstrap) as bootstrap:
        os.environ["AGENTD_BROKER"] = bootstrap
        for _ in range(1 if args.profile else args.repeat):
            app_id = c.unique("bench-tables-inproc")  # a fresh app: empty changelog
            os.environ["BENCH_APP_ID"] = app_id
            sys.modules.pop("_tables_app", None)
            c.create_topic(bootstrap, f"{app_id}-counts-changelog", PARTITIONS,
                           config={"cleanup.policy": "compact"})
            table_dir = tempfile.mkdtemp(prefix="bench-tables-inproc-")
            try:
                if args.profile:
                    from pyinstrument import Profiler

                    profiler = Profiler(interval=0.0005)
                    profiler.start()
                    uvloop.run(one_pass(records, table_dir))
                    profiler.stop()
                    print(profiler.output_text(unicode=False, color=False, show_all=False))
                    return
                passes.append(uvloop.run(one_pass(records, table_dir)))
            finally:
                shutil.rmtree(table_dir, ignore_errors=True)
    per: dict[str, Any] = {name: round(min(p[i] for p in passes) / args.n * 1e6, 2)
                           for i, name in enumerate(("wall", "cpu", "loop_cpu"))}
    print(f"tables in-process: {per['wall']} us/message wall, {per['cpu']} us CPU "
          f"(all threads), {per['loop_cpu']} us CPU on the loop thread (n={args.n})")
    print(json.dumps({"bench": "tables_inproc", "messages": args.n,
                      "us_per_msg": per["wall"], "cpu_us_per_msg": per["cpu"],
                      "loop_cpu_us_per_msg": per["loop_cpu"]}))


if __name__ == "__main__":
    main()
