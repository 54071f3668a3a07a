"""Offset bookkeeping side by side: agentd's OffsetTracker against a Faust-style tracker.

Both trackers see the same workload in one run: one partition, messages dispatched in
batches of 500, acks arriving as ranges of 50 (``partition`` ordering) or as single
offsets in shuffled order within each batch (``none`` ordering), and a commit position
asked for after every batch (a commit interval's worth of work, exaggerated).

The baseline keeps what Faust keeps (FAUST-NOTES.md): a list of acked offsets per
partition, sorted at commit time, scanned for the highest contiguous run; written here
from that description. It also commits *past* in-flight events, which agentd must not,
so agentd's tracker does strictly more work per ack. Prints a markdown table with the
ratio, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from supervisor.daemon.commit import OffsetTracker

BATCH = 500
ACK_RANGE = 50
TP = ("bench", 0)


class ContiguousAckedTracker:
    """Baseline: Faust's rule, highest contiguous acked offset + 1, from a sorted list."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.committed = 0

    def dispatched_range(self, first: int, last: int) -> None:
        pass  # Faust does not track dispatch at all

    def acked_range(self, first: int, last: int) -> None:
        self.acked.extend(range(first, last + 1))

    def position(self) -> int:
        acked = sorted(self.acked)
        position = self.committed
        kept = []
        for offset in acked:
            if offset == position:
                position += 1
            elif offset > position:
                kept.append(offset)
        self.acked, self.committed = kept, position
        return position


def run_agentd(acks: list[list[tuple[int, int]]]) -> float:
    tracker = OffsetTracker()
    lane = tracker.lane(TP)
    start = time.perf_counter()
    for batch, ranges in enumerate(acks):
        lane.dispatched_range(batch * BATCH, batch * BATCH + BATCH - 1)
        for first, last in ranges:
            lane.acked(first, last)
        tracker.mark_committed(tracker.committable())
    return time.perf_counter() - start


def run_baseline(acks: list[list[tuple[int, int]]]) -> float:
    tracker = ContiguousAckedTracker()
    start = time.perf_counter()
    for batch, ranges in enumerate(acks):
        tracker.dispatched_range(batch * BATCH, batch * BATCH + BATCH - 1)
        for first, last in ranges:
            tracker.acked_range(first, last)
        tracker.position()
    return time.perf_counter() - start


def workload(messages: int, shuffled: bool) -> list[list[tuple[int, int]]]:
    rng = random.Random(7)
    batches = []
    for base in range(0, messages, BATCH):
        if shuffled:
            offsets = list(range(base, base + BATCH))
            rng.shuffle(offsets)
            batches.append([(o, o) for o in offsets])
        else:
            batches.append([(o, o + ACK_RANGE - 1) for o in range(base, base + BATCH, ACK_RANGE)])
    return batches


def best_of(runs: int, fn: Callable[[list[list[tuple[int, int]]]], float],
            acks: list[list[tuple[int, int]]]) -> float:
    return min(fn(acks) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200k messages, 2 runs")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.runs = min(args.messages, 200_000), min(args.runs, 2)
    results = {}
    print("| acks | agentd msg/s | Faust-style msg/s | ratio |\n|---|---|---|---|")
    for name, shuffled in (("ranges of 50, in order", False), ("single, shuffled", True)):
        acks = workload(args.messages, shuffled)
        ours = args.messages / best_of(args.runs, run_agentd, acks)
        theirs = args.messages / best_of(args.runs, run_baseline, acks)
        results[name] = {"agentd": ours, "baseline": theirs, "ratio": ours / theirs}
        print(f"| {name} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |")
    print(json.dumps({"bench": "offsets", "messages": args.messages, "quick": args.quick,
                      "results": results}))


if __name__ == "__main__":
    main()
