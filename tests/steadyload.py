"""A steady producer for lifecycle tests: records keep arriving while agentd reloads,
rebalances or stops, so a pause or a lost record shows up in the sink.

Record ``i`` goes to partition ``i % partitions`` with value ``p<partition>:<i>``, so
the sink tells which input partition (hence which instance, in ``partition``
ordering) produced each output, and per-partition order and gaps can be checked.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import kafkatools


class SteadyLoad(kafkatools.PacedProducer):
    """``with SteadyLoad(bootstrap, topic, rate=500) as load: ...; load.stop()``."""

    def __init__(self, bootstrap: str, topic: str, *, partitions: int, rate: float) -> None:
        super().__init__(bootstrap, topic, rate=rate, config={"linger.ms": 2, "acks": "all"},
                         name="steady-load", pause=0.005, flush_timeout=30)
        self.partitions = partitions

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _emit(self, n: int) -> None:
        part = n % self.partitions
        self._producer.produce(self.topic, f"p{part}:{n}".encode(), partition=part,
                               on_delivery=self._delivered)

    def stop(self) -> int:
        """Stop producing, wait for every delivery; how many records were sent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)
        assert not self.errors, self.errors[:3]
        return self.sent


def parse_output(value: bytes) -> tuple[str, int, int]:
    """``[tag:]p<partition>:<i>`` → ``(tag or "", partition, i)``."""
    parts = value.decode().split(":")
    tag = parts[0] if len(parts) == 3 else ""
    return tag, int(parts[-2][1:]), int(parts[-1])


def longest_gap_ms(outputs: list[tuple[int, bytes]]) -> float:
    """The longest silence between consecutive outputs of one input partition, from
    the sink records' timestamps ``(timestamp ms, value)``."""
    by_partition: dict[int, list[int]] = defaultdict(list)
    for ts, value in outputs:
        by_partition[parse_output(value)[1]].append(ts)
    longest = 0
    for stamps in by_partition.values():
        stamps.sort()
        longest = max([longest, *(b - a for a, b in itertools.pairwise(stamps))])
    return float(longest)


def switch_gap_ms(outputs: list[tuple[int, bytes]], old: str, new: str) -> float:
    """The longest time, over input partitions, from the last ``old``-tagged output to
    the first ``new``-tagged one: the processing gap of a code switch."""
    last_old: dict[int, int] = {}
    first_new: dict[int, int] = {}
    for ts, value in outputs:
        tag, part, _ = parse_output(value)
        if tag == old:
            last_old[part] = max(ts, last_old.get(part, ts))
        elif tag == new:
            first_new[part] = min(ts, first_new.get(part, ts))
    gaps = [first_new[p] - last_old[p] for p in last_old if p in first_new]
    return float(max(gaps, default=0))
