"""The supervisor as a consumer-group member: commits, partitions arriving and leaving.

Commits are the invariant's last step: the offset committed for a partition is the
:class:`~supervisor.daemon.offsets.OffsetTracker`'s lowest unacked one, asynchronously every
``commit_interval`` and synchronously when partitions are revoked or the daemon stops.
``on_commit`` marks what the broker accepted, so a failed commit is simply retried.

Between intervals, a partition that is *caught up* (every record dispatched from it
acked, and the last fetch came back empty) is committed at once, at most every
``commit_interval / 10`` and never more than ten times a second
(:func:`prompt_commit_due`): a drained backlog is committed when it is done rather
than up to an interval later, which shrinks what a crash then re-delivers. While
records keep coming, the interval alone paces commits.

Rebalance callbacks run inside ``consume()`` on the supervisor's one thread. On revoke
the supervisor stops feeding the partitions (records not yet in a ring go back to the
broker), waits (bounded) for the instances to ack what they hold, commits, and forgets
the partitions; on assign the routers learn the new partitions.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, TopicPartition

from supervisor.daemon.moves import owners

if TYPE_CHECKING:
    from supervisor.daemon.instances import AgentRuntime
    from supervisor.daemon.supervisor import Supervisor

__all__ = ["GroupMember", "prompt_commit_due"]

log = logging.getLogger("agentd")

#: A caught-up partition is committed at most this often, as a share of the interval...
PROMPT_COMMIT_SHARE = 0.1
#: ...and never sooner than this many seconds after the last commit or look. Trickling
#: input (one ask at a time) makes nearly every fetch empty, so without a floor a short
#: interval (0.1 s: 100 prompt commits a second) put an OffsetCommit per 10 ms on the
#: broker that served the asks, and their p99 rose with it (measured: 2.59 ms at 0.1 s,
#: 1.81 ms at 10 s, 5,000 asks each).
PROMPT_COMMIT_MIN_GAP = 0.1


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


class GroupMember:
    """Commit and rebalance handling for one :class:`~supervisor.daemon.supervisor.Supervisor`."""

    def __init__(self, daemon: Supervisor) -> None:
        self.daemon = daemon
        self.next_commit = 0.0
        self.last_check = 0.0   # the last commit, or look for caught-up partitions

    def commit_if_due(self, fetched_nothing: bool = False) -> None:
        """Commit on the interval; or at once what is caught up (see the module)."""
        now = time.monotonic()
        interval = self.daemon.config.commit_interval
        if now >= self.next_commit:
            self.next_commit = now + interval
            self.last_check = now
            self.commit(asynchronous=True)
        elif prompt_commit_due(now, self.last_check, interval, fetched_nothing):
            self.last_check = now
            done = self.daemon.tracker.caught_up()
            if done:
                self.commit(asynchronous=True, only=set(done))

    def commit(self, asynchronous: bool, only: set[tuple[str, int]] | None = None) -> None:
        """Commit the lowest unacked offset of every partition that moved."""
        assert self.daemon.consumer is not None
        offsets = self.daemon.tracker.committable()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        if not offsets:
            return
        tps = [TopicPartition(topic, partition, offset)
               for (topic, partition), offset in offsets.items()]
        if self.daemon.ops is not None:
            self.daemon.ops.on_commit_sent()
        try:
            if asynchronous:
                self.daemon.consumer.commit(offsets=tps, asynchronous=True)
            else:
                self.on_commit(None, self.daemon.consumer.commit(offsets=tps, asynchronous=False))
        except Exception as exc:
            log.warning("commit failed: %s", exc)
            if self.daemon.ops is not None:
                self.daemon.ops.on_commit_done(exc, [])

    def on_commit(self, error: Any, partitions: list[TopicPartition]) -> None:
        if self.daemon.ops is not None:
            self.daemon.ops.on_commit_done(error, partitions)
        if error is not None:
            log.warning("commit failed: %s", error)
            return
        self.daemon.tracker.mark_committed({(tp.topic, tp.partition): tp.offset
                                     for tp in partitions if tp.error is None})

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for topic in {tp.topic for tp in partitions}:
            tps = [(tp.topic, tp.partition) for tp in partitions if tp.topic == topic]
            for agent in self.daemon.subscriptions.get(topic, []):
                before = owners(agent)
                self.begin_moves(agent, agent.router.assign(tps), before)
        log.info("assigned %d partitions", len(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Stop feeding these partitions, wait (bounded) for their acks, commit, forget."""
        daemon = self.daemon
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        daemon.moves.forget(revoked)
        keyed = {(daemon.topic_index[t], p) for t, p in revoked if t in daemon.topic_index}
        for inst in daemon.instances:  # never-written records go back to the broker
            pending = set(inst.pending)
            for key in [k for k in pending if (k[0], k[1]) in keyed]:
                inst.unacked.pop(key, None)
        # At close (not running) the instances are already stopped: nothing to wait for.
        deadline = time.monotonic() + min(self.daemon.config.shutdown_timeout, 30.0)
        while self.daemon.running and time.monotonic() < deadline and any(
                (k[0], k[1]) in keyed for inst in self.daemon.instances for k in inst.unacked):
            self.daemon.read_instances()
            self.daemon.reloader.poll_handovers()
            self.daemon.reap_instances()
            time.sleep(0.005)
        self.commit(asynchronous=False, only=revoked)
        for tidx, partition in keyed:
            for inst in self.daemon.instances:
                inst.forget(tidx, partition)
            self.daemon.paused_by.pop((tidx, partition), None)
        for tp in revoked:
            self.daemon.tracker.forget(tp)
        for topic in {t for t, _ in revoked}:
            for agent in self.daemon.subscriptions.get(topic, []):
                before = owners(agent)
                moved = agent.router.revoke([tp for tp in revoked if tp[0] == topic])
                self.begin_moves(agent, moved, before)
        log.info("revoked %d partitions", len(partitions))

    def begin_moves(self, agent: AgentRuntime, moved: dict[tuple[str, int], int],
                    before: dict[tuple[str, int], int]) -> None:
        """Partitions the router moved between instances: pause them until their old
        owner is done (``supervisor/daemon/moves.py``)."""
        daemon = self.daemon
        for move in daemon.moves.begin(agent, moved, before, daemon.topic_index):
            daemon.pause(move.new, [(move.topic_index, move.tp[1])])
            log.info("agent %s: %s[%d] moves from instance %d to %d once %d is done with it",
                     agent.name, move.tp[0], move.tp[1], move.old.index, move.new.index,
                     move.old.index)
