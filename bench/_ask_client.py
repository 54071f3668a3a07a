"""Child side of the ask bench: ``client`` times asks, ``worker`` serves them with Faust.

``python bench/_ask_client.py client --sequential N --concurrent M --window W`` asks
``adding`` N times one after another (or until ``--phase-seconds`` passed), then M times
with W in flight, and reports the latencies (ms) with ``_common.report``. ``worker``
runs the Faust worker for the agent (agentd's side is ``agentd start``).
``BENCH_ASK_LIB`` picks the library (see _ask_app).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from _ask_app import LIB, Add, adding, app
from _common import report

WARM_UP = 50


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    n = len(ordered)
    return {f"p{label}": round(ordered[min(n - 1, int(q * n))] * 1000, 3)
            for label, q in (("50", 0.50), ("99", 0.99), ("999", 0.999))}


async def timed_ask(i: int, latencies: list[float]) -> None:
    started = time.perf_counter()
    answer = await adding.ask(Add(a=i, b=1))
    latencies.append(time.perf_counter() - started)
    if answer != i + 1:
        raise AssertionError(f"adding({i}, 1) answered {answer!r}")


async def client(args: argparse.Namespace) -> None:
    if hasattr(app, "start_client"):
        await app.start_client()
    warm: list[float] = []
    for i in range(WARM_UP):  # group join, topic metadata, reply consumer assignment
        await asyncio.wait_for(timed_ask(i, warm), 60)
    sequential: list[float] = []
    stop_at = time.monotonic() + args.phase_seconds
    for i in range(args.sequential):
        await timed_ask(i, sequential)
        if time.monotonic() > stop_at:  # a slow runtime: keep what was measured
            break
    concurrent: list[float] = []
    queue = iter(range(args.concurrent))

    async def lane() -> None:
        for i in queue:
            await timed_ask(i, concurrent)

    first = time.time()
    await asyncio.gather(*(lane() for _ in range(args.window)))
    last = time.time()
    report(first, last, args.concurrent, lib=LIB, sequential=percentiles(sequential),
           concurrent=percentiles(concurrent), sequential_count=len(sequential))
    os._exit(0)


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("role", choices=("client", "worker"))
    cli.add_argument("--sequential", type=int, default=10_000)
    cli.add_argument("--concurrent", type=int, default=10_000)
    cli.add_argument("--window", type=int, default=100)
    cli.add_argument("--phase-seconds", type=float, default=300.0,
                     help="end the sequential phase early after this long")
    args = cli.parse_args()
    if args.role == "worker":
        import faust

        faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
        return
    if LIB == "faust":
        loop: Any = app.loop  # Faust's clients must run on the app's own loop
        loop.run_until_complete(client(args))
    else:
        try:
            import uvloop

            uvloop.run(client(args))
        except ImportError:
            asyncio.run(client(args))


if __name__ == "__main__":
    main()
