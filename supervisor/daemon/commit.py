"""What may be committed, and committing it: the offset tracker, the ack leg, commits.

This is the invariant's last step (DESIGN.md §2). The data path tells the
:class:`OffsetTracker` what it dispatched; an instance writes ``ACK`` ranges into its
outbound ring once its sinks acknowledged them; :meth:`Committer.read_acks` drains
every outbound ring, drops the acked records from the instance (they are no longer
re-dispatched after a crash) and marks them in the tracker, whose lowest unacked
offset per partition is what :meth:`Committer.commit` sends. Other reports in the same
rings (errors, PONGs, RETIRED) go to the supervisor's handler.

**The tracker.** This is where agentd differs from Faust (FAUST-NOTES.md, faust-streaming
issue 606): Faust commits the highest *contiguous acked* offset + 1 and can run past
events still in flight; here a slow earlier event holds the commit back until it is
acknowledged, so a crash can cause redelivery but never loss.

Per (topic, partition) and per *lane* (one lane per agent reading the topic: a message
fanned out to two agents is done only when both lanes acked it) a ``Lane`` keeps:

- ``pending``: a deque of dispatched, not-yet-retired offsets in increasing order. The
  front is the low-water mark. Dispatch appends (``deque.extend(range)`` for a batch),
  so the common case costs no Python loop per message.
- ``early``: a heap of acked ranges that do not start at the front yet (acks from other
  instances in ``key``/``none`` ordering, or a slow event ahead of them). Acks arrive as
  ranges, so this stays small.

An ack range ``[first, last]`` means: every *dispatched* offset in it is done. Kafka
offsets may have gaps (compaction, transaction markers), so the offsets inside a range
that were never dispatched are simply not there. A worker must therefore only merge
offsets *it* processed into one range when no other instance can hold an offset between
them (always true in ``partition`` ordering; in ``key``/``none`` ordering split ranges
wherever the next offset it saw is not previous + 1).

**Commits** go asynchronously every ``commit_interval`` and synchronously when
partitions are revoked or the daemon stops; ``on_commit`` marks what the broker
accepted, so a failed commit is simply retried. Between intervals, a partition that is
*caught up* (every record dispatched from it acked, and the last fetch came back empty)
is committed at once, at most every ``commit_interval / 10``, within 0.1 s to 1 s
(:func:`prompt_commit_due`): a drained backlog is committed when it is done rather
than up to an interval later, which shrinks what a crash then re-delivers.
While records keep coming, the interval alone paces commits.
"""

from __future__ import annotations

import heapq
import logging
import operator
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import repeat, starmap
from typing import Any, Protocol

from confluent_kafka import TopicPartition as KafkaPartition

from supervisor.daemon.failures import FailedRecord
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import Instance
from supervisor.transport import wire

__all__ = ["CommitObserver", "Committer", "Lane", "OffsetTracker", "ReportHandler",
           "prompt_commit_due"]

log = logging.getLogger("agentd")

TopicPartition = tuple[str, int]


class Lane:
    """Dispatched/acked offsets of one partition as seen by one agent."""

    __slots__ = ("early", "next_offset", "pending")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.early: list[tuple[int, int]] = []
        self.next_offset: int | None = None  # highest dispatched + 1

    def dispatched(self, offset: int) -> None:
        """Record that ``offset`` went to an instance. An offset below ``next_offset``
        is a redelivery of one already tracked (an instance crashed) and is ignored."""
        if self.next_offset is None or offset >= self.next_offset:
            self.pending.append(offset)
            self.next_offset = offset + 1

    def dispatched_many(self, offsets: list[int], increasing: bool = False) -> None:
        """``dispatched`` for each of ``offsets`` in order, in one call (a partition's
        run of one fetched batch: increasing, so usually one ``deque.extend``).
        ``increasing``: the caller knows they strictly increase (the data path's runs
        do, ``runscan.scan_run`` ends a run where they do not), so it is not checked."""
        if not offsets:
            return
        if (self.next_offset is None or offsets[0] >= self.next_offset) and (
                increasing or len(offsets) == 1
                or all(map(operator.lt, offsets, offsets[1:]))):
            self.pending.extend(offsets)
            self.next_offset = offsets[-1] + 1
            return
        for offset in offsets:
            self.dispatched(offset)

    def dispatched_range(self, first: int, last: int) -> None:
        """Record that every offset in ``[first, last]`` went to an instance."""
        if self.next_offset is not None and first < self.next_offset:
            first = self.next_offset
        if first <= last:
            self.pending.extend(range(first, last + 1))
            self.next_offset = last + 1

    def acked(self, first: int, last: int) -> None:
        """Every dispatched offset in ``[first, last]`` is done (agent and sinks)."""
        pending = self.pending
        if pending and first <= pending[0]:
            if pending[-1] <= last:
                pending.clear()              # all of it (a caught-up partition)
            else:
                # The retired prefix is a run (``pending`` increases): count it with
                # one bisect-like step when it is gapless, else one offset at a time.
                run = last - pending[0] + 1
                if 0 < run <= len(pending) and pending[run - 1] == last:
                    deque(starmap(pending.popleft, repeat((), run)), maxlen=0)
                while pending and pending[0] <= last:
                    pending.popleft()
            if self.early:
                self._drain_early()
        elif pending and first <= pending[-1]:
            heapq.heappush(self.early, (first, last))
        # else: nothing dispatched in the range (already retired, or a stray ack)

    def _drain_early(self) -> None:
        """Retire offsets covered by early acks that now touch the front."""
        pending, early = self.pending, self.early
        while early and pending:
            first, last = early[0]
            front = pending[0]
            if last < front:
                heapq.heappop(early)  # wholly retired already
            elif first <= front:
                heapq.heappop(early)
                while pending and pending[0] <= last:
                    pending.popleft()
            else:
                return
        if not pending:
            early.clear()

    def low_water(self) -> int | None:
        """The lowest unacked offset, else highest dispatched + 1, else None (never fed)."""
        return self.pending[0] if self.pending else self.next_offset

    def unacked(self) -> list[int]:
        """Dispatched offsets not yet acked, in offset order (for re-dispatch after a crash)."""
        if not self.early:
            return list(self.pending)
        done = self.early
        return [o for o in self.pending if not any(f <= o <= la for f, la in done)]

    @property
    def in_flight(self) -> int:
        """How many offsets are tracked but not retired (an upper bound with early acks)."""
        return len(self.pending)


class OffsetTracker:
    """All partitions of one consumer: what is committable, and what changed since the
    last successful commit.

    Two-phase on purpose: ``committable()`` does not mark anything, the daemon calls
    ``mark_committed()`` from the commit's success, so a failed commit is retried with
    the same offsets on the next interval.
    """

    def __init__(self) -> None:
        self._lanes: dict[TopicPartition, dict[int, Lane]] = {}
        self._committed: dict[TopicPartition, int] = {}
        #: lost to the group (``GroupMember.on_lost``): acks still count, nothing is
        #: committed for them until they are this daemon's again (or forgotten)
        self.suspended: set[TopicPartition] = set()

    def lane(self, tp: TopicPartition, lane: int = 0) -> Lane:
        """The ``Lane`` object, for a hot loop that wants to skip two dict lookups."""
        lanes = self._lanes.get(tp)
        if lanes is None:
            lanes = self._lanes[tp] = {}
        found = lanes.get(lane)
        if found is None:
            found = lanes[lane] = Lane()
        return found

    def dispatched(self, tp: TopicPartition, offset: int, lane: int = 0) -> None:
        """One message of ``tp`` went to an instance of agent ``lane``."""
        self.lane(tp, lane).dispatched(offset)

    def dispatched_range(self, tp: TopicPartition, first: int, last: int,
                         lane: int = 0) -> None:
        """Offsets ``first..last`` (all of them exist) went to instances of ``lane``."""
        self.lane(tp, lane).dispatched_range(first, last)

    def acked(self, tp: TopicPartition, first: int, last: int, lane: int = 0) -> None:
        """An instance of ``lane`` finished the dispatched offsets in ``first..last``.
        Acks for a partition that was forgotten (revoked) are ignored."""
        lanes = self._lanes.get(tp)
        if lanes is not None:
            found = lanes.get(lane)
            if found is not None:
                found.acked(first, last)

    def position(self, tp: TopicPartition) -> int | None:
        """The offset to commit for ``tp`` now: the lowest over its lanes."""
        lows = [low for low in (lane.low_water() for lane in self._lanes.get(tp, {}).values())
                if low is not None]
        return min(lows) if lows else None

    def committable(self) -> dict[TopicPartition, int]:
        """``{tp: offset}`` for partitions whose commit position moved since the last
        ``mark_committed``; the offset is Kafka's "next message to read"."""
        moved: dict[TopicPartition, int] = {}
        for tp in self._lanes:
            if tp in self.suspended:
                continue
            position = self.position(tp)
            if position is not None and position != self._committed.get(tp):
                moved[tp] = position
        return moved

    def caught_up(self) -> dict[TopicPartition, int]:
        """``{tp: offset}`` like :meth:`committable`, only for partitions with nothing in
        flight in any lane: every record dispatched from them is acked, so the offset is
        final until new records come (what the daemon commits at once when a fetch came
        back empty, instead of at the next interval)."""
        done: dict[TopicPartition, int] = {}
        committed = self._committed
        for tp, lanes in self._lanes.items():
            position = None
            for lane in lanes.values():
                if lane.pending or tp in self.suspended:
                    break
                low = lane.next_offset
                if low is not None and (position is None or low < position):
                    position = low
            else:
                if position is not None and position != committed.get(tp):
                    done[tp] = position
        return done

    def mark_committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The broker accepted these offsets (call from the commit's success)."""
        for tp, offset in offsets.items():
            if tp in self._lanes:
                self._committed[tp] = offset

    def set_committed(self, tp: TopicPartition, offset: int) -> None:
        """The group's committed offset at assignment, so an unchanged one is not resent."""
        self._committed[tp] = offset

    def unacked(self, tp: TopicPartition, lane: int = 0) -> list[int]:
        """Offsets of ``tp`` still in flight for ``lane``, in order (for re-dispatch)."""
        lanes = self._lanes.get(tp)
        return lanes[lane].unacked() if lanes and lane in lanes else []

    def in_flight(self, tp: TopicPartition) -> int:
        """Messages of ``tp`` not yet done by every lane (for drain-on-revoke waits)."""
        return max((lane.in_flight for lane in self._lanes.get(tp, {}).values()), default=0)

    def forget(self, tp: TopicPartition) -> None:
        """Drop ``tp`` (revoked): later acks for it are ignored, it is never committed."""
        self._lanes.pop(tp, None)
        self._committed.pop(tp, None)
        self.suspended.discard(tp)

    def next_offset(self, tp: TopicPartition) -> int | None:
        """Where fetching ``tp`` goes on from: the lowest over its lanes of highest
        dispatched + 1 (None: never fed). Everything below it is acked or in flight."""
        nexts = [lane.next_offset for lane in self._lanes.get(tp, {}).values()
                 if lane.next_offset is not None]
        return min(nexts) if nexts else None

    def partitions(self) -> Iterable[TopicPartition]:
        """Every partition with tracked state."""
        return list(self._lanes)


#: A caught-up partition is committed at most this often, as a share of the interval...
PROMPT_COMMIT_SHARE = 0.1
#: ...and never sooner than this many seconds after the last commit or look. Trickling
#: input (one ask at a time) makes nearly every fetch empty, so without a floor a short
#: interval (0.1 s: 100 prompt commits a second) put an OffsetCommit per 10 ms on the
#: broker that served the asks, and their p99 rose with it (measured: 2.59 ms at 0.1 s,
#: 1.81 ms at 10 s, 5,000 asks each).
PROMPT_COMMIT_MIN_GAP = 0.1
#: ...and never later than this: "at once" must stay at once with a long interval (600 s
#: made a drained backlog wait 60 s for its commit, which the interval's own tick nearly
#: matched), while one OffsetCommit a second costs the broker nothing.
PROMPT_COMMIT_MAX_GAP = 1.0

#: What to do with an instance's report that is not an ACK (error, PONG, RETIRED).
ReportHandler = Callable[[Instance, bytes], None]


class CommitObserver(Protocol):
    """Who times commits and remembers what the broker accepted (the ops side)."""

    def on_commit_sent(self) -> None: ...

    def on_commit_done(self, error: Any, partitions: list[Any]) -> None: ...


def prompt_commit_due(now: float, last_check: float, interval: float,
                      fetched_nothing: bool) -> bool:
    """Whether to look for caught-up partitions and commit them now, before the
    interval's tick: only when the last fetch came back empty (a busy stream waits for
    the tick) and the last commit or look is at least a tenth of the interval ago (a
    rate limit for trickling input, and for the scan itself in a loop that turns every
    millisecond while an instance is blocked), and at least :data:`PROMPT_COMMIT_MIN_GAP`
    ago whatever the interval, and at most :data:`PROMPT_COMMIT_MAX_GAP` ago however long
    the interval is."""
    gap = min(max(interval * PROMPT_COMMIT_SHARE, PROMPT_COMMIT_MIN_GAP), PROMPT_COMMIT_MAX_GAP)
    return fetched_nothing and now - last_check >= gap


def _stale_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError
    return frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
                      KafkaError.UNKNOWN_MEMBER_ID, KafkaError._WAIT_COORD,
                      KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS})


#: commit errors that mean "this member's generation is no longer the group's" (or the
#: group has no coordinator yet: a broker came back and the member is rejoining)
STALE_GENERATION = _stale_codes()


class Committer:
    """Reads acks into the offset tracker and commits its low-water marks."""

    def __init__(self, tracker: OffsetTracker, fleet: Fleet, on_report: ReportHandler) -> None:
        self.tracker = tracker
        #: the daemon's consumer, once it exists (commits go through it)
        self.consumer: Any = None
        self.fleet = fleet
        self.on_report = on_report
        self.observer: CommitObserver | None = None
        self.next_commit = 0.0
        self.last_check = 0.0   # the last commit, or look for caught-up partitions
        #: exactly once: the instances commit offsets in their transactions, not this
        self.transactional = False
        #: a commit refused for an old generation was logged; until one succeeds again
        self.stale_logged = False

    # ------------------------------------------------------------------ acks

    def read_acks(self) -> bool:
        """Drain every instance's outbound ring (see the module); True when any had
        something."""
        got = False
        for inst in self.fleet.instances:
            records = inst.read_outbound()
            if records:
                got = True
                self.retire(inst, records, self.on_report)
        return got

    def retire(self, inst: Instance, records: list[bytes], on_report: ReportHandler) -> None:
        """Apply one batch of ``inst``'s outbound records: ACK ranges retire records in
        the instance and the tracker; anything else goes to ``on_report``. Also used
        for a process being handed over, whose rings are no longer the instance's."""
        topics, tracker, lane = self.fleet.topics, self.tracker, inst.agent.lane
        unpack = wire.ACK_RECORD.unpack_from
        for record in records:
            if record[0] == wire.ACK:
                _, tidx, partition, first, last = unpack(record)
                inst.acked(tidx, partition, first, last)
                tracker.acked((topics[tidx], partition), first, last, lane)
            elif record[0] == wire.CHANNEL:  # a channel message: on to its readers
                self.fleet.route_channel(record)
            else:
                on_report(inst, record)

    def failed_done(self, record: FailedRecord) -> None:
        """The error policy finished a record the daemon failed itself: it counts as acked."""
        self.tracker.acked((record.topic, record.partition), record.offset, record.offset,
                           record.lane)

    # ------------------------------------------------------------------ commits

    def start_interval(self) -> None:
        """The first interval starts when consuming does."""
        self.next_commit = time.monotonic() + self.fleet.config.commit_interval

    def commit_if_due(self, fetched_nothing: bool = False) -> None:
        """Commit on the interval; or at once what is caught up (see the module)."""
        now = time.monotonic()
        interval = self.fleet.config.commit_interval
        if now >= self.next_commit:
            self.next_commit = now + interval
            self.last_check = now
            self.commit(asynchronous=True)
        elif prompt_commit_due(now, self.last_check, interval, fetched_nothing):
            self.last_check = now
            done = self.tracker.caught_up()
            if done:
                self.commit(asynchronous=True, only=set(done))

    def commit(self, asynchronous: bool, only: set[tuple[str, int]] | None = None) -> None:
        """Commit the lowest unacked offset of every partition that moved (under exactly
        once the instances' transactions commit offsets, and this does nothing)."""
        if self.transactional:
            return
        consumer = self.consumer
        assert consumer is not None
        offsets = self.tracker.committable()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        if not offsets:
            return
        tps = [KafkaPartition(topic, partition, offset)
               for (topic, partition), offset in offsets.items()]
        if self.observer is not None:
            self.observer.on_commit_sent()
        try:
            if asynchronous:
                consumer.commit(offsets=tps, asynchronous=True)
            else:
                self.on_commit(None, consumer.commit(offsets=tps, asynchronous=False))
        except Exception as exc:
            self.log_failure(exc.args[0] if exc.args else exc)
            if self.observer is not None:
                self.observer.on_commit_done(exc, [])

    def on_commit(self, error: Any, partitions: list[KafkaPartition]) -> None:
        """The broker's answer to a commit (confluent-kafka's ``on_commit`` callback)."""
        if self.observer is not None:
            self.observer.on_commit_done(error, partitions)
        if error is not None:
            self.log_failure(error)
            return
        self.stale_logged = False
        self.tracker.mark_committed({(tp.topic, tp.partition): tp.offset
                                     for tp in partitions if tp.error is None})

    def log_failure(self, error: Any) -> None:
        """Log a failed commit; one refused for an old generation (the group is
        rebalancing, or this member was evicted) once until a commit succeeds again.
        Why: every commit in a rebalance is refused the same way (the offsets are kept
        and retried), so a warning per attempt would flood the log with one event."""
        code = error.code() if hasattr(error, "code") else None
        if code in STALE_GENERATION:
            if self.stale_logged:
                return
            self.stale_logged = True
            log.warning("commit refused while the group rebalances (%s): the offsets are "
                        "kept and committed after it", error)
            return
        log.warning("commit failed: %s", error)
