"""The commit leg: acks from the instances retire records, and the offset tracker's
low-water marks go to the broker.

This is the invariant's last step (DESIGN.md §2). An instance writes ``ACK`` ranges
into its outbound ring once its sinks acknowledged them; :meth:`Committer.read_acks`
drains every outbound ring, drops the acked records from the instance (they are no
longer re-dispatched after a crash) and tells the
:class:`~supervisor.daemon.offsets.OffsetTracker`, whose lowest unacked offset per
partition is what may be committed. Other reports in the same rings (errors, PONGs,
RETIRED) go to the supervisor's handler.

Commits go asynchronously every ``commit_interval`` and synchronously when partitions
are revoked or the daemon stops; ``on_commit`` marks what the broker accepted, so a
failed commit is simply retried. Between intervals, a partition that is *caught up*
(every record dispatched from it acked, and the last fetch came back empty) is
committed at once, at most every ``commit_interval / 10`` and never more than ten
times a second (:func:`prompt_commit_due`): a drained backlog is committed when it is
done rather than up to an interval later, which shrinks what a crash then
re-delivers. While records keep coming, the interval alone paces commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import TopicPartition

from supervisor.daemon.datapath import DataPath
from supervisor.daemon.failures import FailedRecord
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import Instance
from supervisor.transport import wire

__all__ = ["CommitObserver", "Committer", "ReportHandler", "prompt_commit_due"]

log = logging.getLogger("agentd")

#: A caught-up partition is committed at most this often, as a share of the interval...
PROMPT_COMMIT_SHARE = 0.1
#: ...and never sooner than this many seconds after the last commit or look. Trickling
#: input (one ask at a time) makes nearly every fetch empty, so without a floor a short
#: interval (0.1 s: 100 prompt commits a second) put an OffsetCommit per 10 ms on the
#: broker that served the asks, and their p99 rose with it (measured: 2.59 ms at 0.1 s,
#: 1.81 ms at 10 s, 5,000 asks each).
PROMPT_COMMIT_MIN_GAP = 0.1

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
    ago whatever the interval."""
    gap = max(interval * PROMPT_COMMIT_SHARE, PROMPT_COMMIT_MIN_GAP)
    return fetched_nothing and now - last_check >= gap


class Committer:
    """Reads acks into the data path's offset tracker and commits its low-water marks."""

    def __init__(self, datapath: DataPath, fleet: Fleet, on_report: ReportHandler) -> None:
        self.datapath = datapath
        self.tracker = datapath.tracker
        self.fleet = fleet
        self.on_report = on_report
        self.observer: CommitObserver | None = None
        self.next_commit = 0.0
        self.last_check = 0.0   # the last commit, or look for caught-up partitions

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
        """Commit the lowest unacked offset of every partition that moved."""
        consumer = self.datapath.consumer
        assert consumer is not None
        offsets = self.tracker.committable()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        if not offsets:
            return
        tps = [TopicPartition(topic, partition, offset)
               for (topic, partition), offset in offsets.items()]
        if self.observer is not None:
            self.observer.on_commit_sent()
        try:
            if asynchronous:
                consumer.commit(offsets=tps, asynchronous=True)
            else:
                self.on_commit(None, consumer.commit(offsets=tps, asynchronous=False))
        except Exception as exc:
            log.warning("commit failed: %s", exc)
            if self.observer is not None:
                self.observer.on_commit_done(exc, [])

    def on_commit(self, error: Any, partitions: list[TopicPartition]) -> None:
        """The broker's answer to a commit (confluent-kafka's ``on_commit`` callback)."""
        if self.observer is not None:
            self.observer.on_commit_done(error, partitions)
        if error is not None:
            log.warning("commit failed: %s", error)
            return
        self.tracker.mark_committed({(tp.topic, tp.partition): tp.offset
                                     for tp in partitions if tp.error is None})
