"""Assigned partitions that never start fetching: said in the log, not left silent.

After an assignment librdkafka reads the group's committed offsets for the new
partitions and only then fetches them. When that read never answers, the partitions
sit in the assignment with nothing fetched: the daemon looks healthy, its instances are
idle, and the records wait. Under exactly once the broker holds the read back while a
transaction that commits offsets of the group is still open (KIP-447 stable offsets),
so a transaction that never ends on the broker stops the group for good; fault row 24
(broker down 20 s, exactly once) once ended that way in CI.

:class:`FetchWatch` notes when each partition was assigned and, every
:data:`CHECK_EVERY` seconds, asks librdkafka's cached watermarks (no request: they come
with every fetch response, an empty partition's too) whether the partition has been
fetched. One not fetched :data:`WARN_AFTER` seconds after its assignment (time paused
by the daemon's backpressure not counted) is logged once as a warning naming it, and
again (info) when it starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import TopicPartition

__all__ = ["CHECK_EVERY", "WARN_AFTER", "FetchWatch"]

log = logging.getLogger("agentd")

CHECK_EVERY = 5.0
#: Longer than a transaction timeout (agentd's is 15 s at least), a coordinator's load
#: after a broker restart and a rebalance: a partition still not fetched then is stuck.
WARN_AFTER = 30.0
#: librdkafka's cached watermark before the partition's first fetch response.
NOT_FETCHED = -1001


class FetchWatch:
    """The daemon's assigned partitions not yet seen fetched, and when they came."""

    def __init__(self, group_id: str, exactly_once: bool,
                 paused: Callable[[tuple[str, int]], bool] = lambda tp: False) -> None:
        self.group_id = group_id
        self.exactly_once = exactly_once
        #: whether the daemon paused the partition (backpressure): its clock restarts
        self.paused = paused
        #: (topic, partition) -> monotonic time of its assignment, until seen fetched
        self.waiting: dict[tuple[str, int], float] = {}
        #: of those, the ones already warned about
        self.warned: set[tuple[str, int]] = set()
        self.next_check = 0.0

    def assigned(self, partitions: Iterable[tuple[str, int]], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for tp in partitions:
            self.waiting.setdefault(tp, now)

    def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        for tp in partitions:
            self.waiting.pop(tp, None)
            self.warned.discard(tp)

    def tick(self, consumer: Any, now: float | None = None) -> list[tuple[str, int]]:
        """Check (at most every :data:`CHECK_EVERY` s); the partitions warned about now."""
        now = time.monotonic() if now is None else now
        if now < self.next_check or not self.waiting or consumer is None:
            return []
        self.next_check = now + CHECK_EVERY
        late = []
        for tp, since in list(self.waiting.items()):
            if self.paused(tp):  # not fetching on purpose: no time counts against it
                self.waiting[tp] = now
            elif fetched(consumer, tp):
                del self.waiting[tp]
                if tp in self.warned:
                    self.warned.discard(tp)
                    log.info("%s[%d] started fetching %.0f s after its assignment",
                             tp[0], tp[1], now - since)
            elif now - since >= WARN_AFTER and tp not in self.warned:
                late.append(tp)
        if late:
            self.warned.update(late)
            self.warn(late, now)
        return late

    def warn(self, late: list[tuple[str, int]], now: float) -> None:
        oldest = max(now - self.waiting[tp] for tp in late)
        why = (f"; under exactly once the broker holds them back while a transaction that "
               f"commits offsets of group {self.group_id} is open: one that never ends "
               f"shows in `kafka-transactions.sh find-hanging`" if self.exactly_once else "")
        log.warning("%d assigned partitions not fetched up to %.0f s after their assignment "
                    "(%s): the group's committed offsets for them have not arrived%s",
                    len(late), oldest, ", ".join(f"{t}[{p}]" for t, p in sorted(late)), why)


def fetched(consumer: Any, tp: tuple[str, int]) -> bool:
    """Whether a fetch response for the partition has arrived (cached high watermark)."""
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
    except Exception:  # the partition left the assignment meanwhile: not ours to watch
        return True
    return bool(high != NOT_FETCHED)
