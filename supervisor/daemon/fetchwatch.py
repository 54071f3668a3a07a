"""Assigned partitions that never start fetching: said in the log, not left silent.

After an assignment librdkafka reads the group's committed offsets for the new
partitions and only then fetches them. When that read never answers, the partitions
sit in the assignment with nothing fetched: the daemon looks healthy, its instances are
idle, and the records wait. Under exactly once the broker holds the read back while a
transaction that commits offsets of the group is still open (KIP-447 stable offsets),
so a transaction that never ends on the broker stops the group for good. That happens:
fault row 24 (broker down 20 s, exactly once) twice left a transaction whose commit the
transaction coordinator had logged complete while its marker never reached
``__consumer_offsets`` (once as the broker stopped, once as it came back, Kafka 4.4);
librdkafka then waits on the whole assignment, not only on the partitions that
transaction held.

:class:`FetchWatch` notes when each partition was assigned and reads librdkafka's
statistics (``statistics.interval.ms``: every :data:`STATS_INTERVAL_MS`, a JSON
document the consumer hands over from ``consume()``; no request): a partition whose
``fetch_state`` is ``active`` is fetching. One that is not :data:`WARN_AFTER` seconds
after its assignment (time paused by the daemon's backpressure not counted) is logged
once, naming it and, among them, the partitions whose committed offset never arrived
(held by such a transaction), with the remedy; and again (info) when it starts. Why
statistics and not the cached watermarks this used first: librdkafka keeps a partition's
watermarks across a revoke and a new assignment, so after a rebalance (the case above)
every partition looked fetched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable

__all__ = ["CHECK_EVERY", "STATS_INTERVAL_MS", "WARN_AFTER", "FetchWatch"]

log = logging.getLogger("agentd")

CHECK_EVERY = 5.0
#: How often librdkafka sends the consumer's statistics (the watch's only input).
STATS_INTERVAL_MS = 5000
#: Longer than a transaction timeout (agentd's is 15 s at least), a coordinator's load
#: after a broker restart and a rebalance: a partition still not fetched then is stuck.
WARN_AFTER = 30.0
#: librdkafka's offset for "none known" (a committed offset that never arrived).
NO_OFFSET = -1001

TopicPartition = tuple[str, int]


class FetchWatch:
    """The daemon's assigned partitions not yet seen fetching, and when they came."""

    def __init__(self, group_id: str, exactly_once: bool,
                 paused: Callable[[TopicPartition], bool] = lambda tp: False) -> None:
        self.group_id = group_id
        self.exactly_once = exactly_once
        #: whether the daemon paused the partition (backpressure): its clock restarts
        self.paused = paused
        #: (topic, partition) -> monotonic time of its assignment, until seen fetching
        self.waiting: dict[TopicPartition, float] = {}
        #: of those, the ones already warned about
        self.warned: set[TopicPartition] = set()
        #: of those, (fetch state, committed offset) as the latest statistics said,
        #: from statistics that began after the assignment
        self.states: dict[TopicPartition, tuple[str, int]] = {}
        #: statistics documents to skip: one begun before an assignment may still come
        self.stale = 0
        self.next_check = 0.0

    def assigned(self, partitions: Iterable[TopicPartition], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for tp in partitions:
            self.waiting.setdefault(tp, now)
            self.states.pop(tp, None)
        self.stale = 1

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.waiting.pop(tp, None)
            self.warned.discard(tp)
            self.states.pop(tp, None)

    def on_stats(self, document: str) -> None:
        """librdkafka's ``stats_cb``: note the watched partitions' fetch states (parsed
        only while a partition is watched: after a while, never)."""
        if not self.waiting:
            return
        if self.stale:
            self.stale -= 1
            return
        topics = json.loads(document).get("topics", {})
        for tp in self.waiting:
            found = topics.get(tp[0], {}).get("partitions", {}).get(str(tp[1]))
            if found is not None:
                self.states[tp] = (str(found.get("fetch_state")),
                                   int(found.get("committed_offset", NO_OFFSET)))

    def tick(self, now: float | None = None) -> list[TopicPartition]:
        """Check (at most every :data:`CHECK_EVERY` s); the partitions warned about now."""
        now = time.monotonic() if now is None else now
        if now < self.next_check or not self.waiting:
            return []
        self.next_check = now + CHECK_EVERY
        late = []
        for tp, since in list(self.waiting.items()):
            if self.paused(tp):  # not fetching on purpose: no time counts against it
                self.waiting[tp] = now
            elif self.fetching(tp):
                del self.waiting[tp]
                self.states.pop(tp, None)
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

    def fetching(self, tp: TopicPartition) -> bool:
        state = self.states.get(tp)
        return state is not None and state[0] == "active"

    def held(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Of ``partitions``, those whose committed offset librdkafka says never came."""
        return sorted(tp for tp in partitions
                      if tp in self.states and self.states[tp][1] == NO_OFFSET)

    def warn(self, late: list[TopicPartition], now: float) -> None:
        oldest = max(now - self.waiting[tp] for tp in late)
        names = ", ".join(f"{t}[{p}]" for t, p in sorted(late))
        if not self.exactly_once:
            log.warning("%d assigned partitions not fetched up to %.0f s after their "
                        "assignment (%s): the group's committed offsets for them have not "
                        "arrived", len(late), oldest, names)
            return
        held = self.held(late)
        which = (f"those of {', '.join(f'{t}[{p}]' for t, p in held)} never came"
                 if held else "they have not arrived")
        log.error("%d assigned partitions not fetched up to %.0f s after their assignment "
                  "(%s): the group's committed offsets are held back (%s) by a transaction "
                  "that committed offsets of group %s and never ended on the broker, which "
                  "stops every partition of this assignment. Find it with "
                  "`kafka-transactions.sh --bootstrap-server HOST:PORT find-hanging "
                  "--broker-id N` (the broker leading __consumer_offsets for the group) and "
                  "end it with `kafka-transactions.sh ... abort --topic __consumer_offsets "
                  "--partition P --start-offset O`; the records its offsets covered are then "
                  "processed again", len(late), oldest, names, which, self.group_id)
