#!/usr/bin/env python3
"""In-process micro-benchmark of one worker's per-message path (no broker, no rings).

Encodes N bench records as the supervisor would (``wire.encode_record``), then runs
them through a real :class:`supervisor.instance.worker.Worker` whose rings are stand-ins:
``wire.decode_record`` → ``AgentHost.feed`` → the bench's trivial agent →
``on_done`` → ``flush_acks``. Prints µs per message, wall and CPU (best of ``--repeat``;
CPU time is the steadier on a shared machine), and with
``--profile`` a pyinstrument profile of one pass.

    .venv/bin/python bench/worker_inproc.py [-n 200000] [--repeat 3] [--profile]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("BENCH_TOPIC", "bench-input")

import _common as c


class _Outbound:
    def __init__(self) -> None:
        self.acks = 0

    def write_many(self, records: list[bytes]) -> int:
        self.acks += len(records)
        return len(records)


class _Inbound:
    """Hands out the encoded records in READ_BATCH slices, as memoryviews."""

    def __init__(self, records: list[bytes], batch: int) -> None:
        self.records = records
        self.pos = 0
        self.batch = batch

    def read_many(self, n: int) -> list[memoryview]:
        n = min(n, self.batch)
        out = [memoryview(r) for r in self.records[self.pos:self.pos + n]]
        self.pos += len(out)
        return out

    def release(self) -> None:
        pass

    def prepare_read_sleep(self) -> bool:
        return True


async def one_pass(records: list[bytes]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for feeding ``records`` through."""
    import _agentd_app

    from supervisor.instance.worker import READ_BATCH, Worker, tune_gc

    tune_gc()  # as worker.run does

    agent = _agentd_app.process
    worker = Worker.__new__(Worker)
    settings = {"agent": agent.name, "topics": [_agentd_app.TOPIC]}
    # What Worker.__init__ does, minus attaching rings.
    import agentlib.seam as seam
    worker.inbound = _Inbound(records, READ_BATCH)  # type: ignore[assignment]
    worker.outbound = _Outbound()  # type: ignore[assignment]
    worker.agent = agent
    worker.settings = settings
    worker.name = agent.name
    worker.topics = list(settings["topics"])
    worker.topic_index = {n: i for i, n in enumerate(worker.topics)}
    worker.max_in_flight = 4096
    worker._raw_record = seam.new_raw_record
    worker._verdict = seam.ErrorVerdict
    worker.host = seam.AgentHost(agent, on_done=worker.on_done, on_error=worker.on_error)
    worker._fed = {}
    worker._done = {}
    worker._done_by_name = {}
    worker._outbox = []
    worker._flush_scheduled = False
    worker.txn = None  # no transactions in this bench
    worker._throttled = False
    worker._stopping = False
    worker.processed = 0
    worker._producer = None
    worker._tasks = set()
    worker.tables = None
    worker._loop = asyncio.get_running_loop()
    worker._exit = worker._loop.create_future()
    await worker.host.start()
    total = len(records)
    start, cpu_start = time.perf_counter(), time.process_time()
    while worker.processed < total:
        if worker.inbound.pos < total and not worker._throttled:
            worker.pump()
        await asyncio.sleep(0)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    await worker.host.stop(5.0)
    worker.flush_acks()
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="50k records, 2 passes")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeat = min(args.n, 50_000), min(args.repeat, 2)
    from supervisor.transport import wire

    rng = random.Random(1)
    records = [wire.encode_record(0, i % 8, i // 8, 1_764_000_000_000 + i,
                                  f"key-{i % 1000}".encode(), c.json_value(i, rng), None)
               for i in range(args.n)]
    import uvloop

    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        uvloop.run(one_pass(records))
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        return
    passes = [uvloop.run(one_pass(records)) for _ in range(args.repeat)]
    best = min(wall for wall, _ in passes)
    # CPU time is what a busy shared machine disturbs least: compare runs by it.
    best_cpu = min(cpu for _, cpu in passes)
    print(f"worker in-process: {best / args.n * 1e6:.2f} us/message wall, "
          f"{best_cpu / args.n * 1e6:.2f} us/message CPU (n={args.n})")
    print(json.dumps({"bench": "worker_inproc", "messages": args.n,
                      "worker_us_per_msg": round(best / args.n * 1e6, 3),
                      "worker_cpu_us_per_msg": round(best_cpu / args.n * 1e6, 3)}))


if __name__ == "__main__":
    main()
