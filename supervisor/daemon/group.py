"""The supervisor as a consumer-group member: partitions arriving and leaving.

Rebalance callbacks run inside ``consume()`` on the supervisor's one thread. On
assign the routers learn the new partitions (which may move partitions between
instances: the data path holds them until their old owner is done). On revoke the
data path stops feeding the partitions (records not yet in a ring go back to the
broker), the instances get a bounded time to ack what they hold, the acked part is
committed synchronously, and the partitions are forgotten.

Waiting for those acks is the supervisor's own loop steps (read acks, advance a
handover, reap the dead), run through the ``await_acks`` callable the supervisor
passes in: librdkafka needs the commit before the callback returns, so the wait
cannot be left to the next loop turn.

**Lost partitions** (issue 20) are different: the group dropped this member (its
session expired, typically while the broker was down), so they may be another
member's already, nothing can be committed for them, and waiting for acks would only
stall the loop (sinks cannot ack while the broker is away). Under at-least-once their
work is kept as it is: the instances go on with what they hold, acks still reach the
offset tracker (which commits nothing for them meanwhile). The next assignment
settles them: a partition that comes back, with the group's committed offset not past
what this daemon dispatched, is fetched from where this daemon stopped fetching, so
nothing it already had is replayed; any other is dropped then, as a revoke would
without the wait and the commit, and read from the committed offset like any newly
assigned one. Under exactly once a lost partition is revoked as before (its offsets
go in the instances' transactions, which the group's new generation fences).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.fetchwatch import FetchWatch
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.keeper import TableKeeper
from supervisor.daemon.moves import owners
from supervisor.daemon.transactions import GroupFeed

__all__ = ["GroupMember"]

log = logging.getLogger("agentd")

#: Waits (bounded) until no instance holds a record of these (topic index, partition).
AwaitAcks = Callable[[set[tuple[int, int]]], None]


class GroupMember:
    """confluent-kafka's rebalance callbacks for one daemon's consumer."""

    def __init__(self, fleet: Fleet, datapath: DataPath, committer: Committer,
                 await_acks: AwaitAcks) -> None:
        self.fleet = fleet
        self.datapath = datapath
        self.committer = committer
        self.await_acks = await_acks
        #: told what this daemon owns, to keep standby copies of the rest
        self.keeper: TableKeeper | None = None
        #: exactly once: instances get the new generation's group metadata at once
        self.txfeed: GroupFeed | None = None
        #: partitions lost with their work kept, until the next assignment settles them
        self.lost: set[tuple[str, int]] = set()
        #: assigned partitions not yet fetched (set at start: fetchwatch.py)
        self.fetchwatch: FetchWatch | None = None

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.datapath.consumer:
            return  # a consumer replaced after a fatal error (membership.py)
        if self.lost:
            resumed = self.settle_lost(consumer, partitions)
            partitions = [tp for tp in partitions if (tp.topic, tp.partition) not in resumed]
        for topic in {tp.topic for tp in partitions}:
            tps = [(tp.topic, tp.partition) for tp in partitions if tp.topic == topic]
            for agent in self.fleet.subscriptions.get(topic, []):
                before = owners(agent)
                self.datapath.begin_moves(agent, agent.router.assign(tps), before)
        if self.keeper is not None:
            self.keeper.assigned((tp.topic, tp.partition) for tp in partitions)
        if self.txfeed is not None:
            self.txfeed.rebalanced(consumer)
        if self.fetchwatch is not None:
            self.fetchwatch.assigned((tp.topic, tp.partition) for tp in partitions)
        log.info("assigned %d partitions", len(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Stop feeding these partitions, wait (bounded) for their acks, commit, forget."""
        if consumer is not self.datapath.consumer:
            return
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        keyed = self.datapath.stop_feeding(revoked)
        self.await_acks(keyed)
        self.committer.commit(asynchronous=False, only=revoked)
        self.forget(revoked, keyed)
        log.info("revoked %d partitions", len(partitions))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group dropped this member: keep the partitions' work (see the module)."""
        if consumer is not self.datapath.consumer:
            return
        if self.committer.transactional:
            self.on_revoke(consumer, partitions)
            return
        lost = {(tp.topic, tp.partition) for tp in partitions}
        tracker = self.datapath.tracker
        tracker.suspended |= lost
        self.lost |= lost
        log.warning("lost %d partitions (the group no longer knows this member): %d records "
                    "in flight kept; fed on from where they are if the partitions come back",
                    len(lost), sum(tracker.in_flight(tp) for tp in lost))

    def held(self) -> list[TopicPartition]:
        """The partitions this daemon feeds (its routers know them: a consumer that had a
        fatal error may no longer say)."""
        held = {tp for agent in self.fleet.agents
                for index in range(agent.router.instances)
                for tp in agent.router.partitions_of(index)}
        return [TopicPartition(topic, partition) for topic, partition in sorted(held)]

    def settle_lost(self, consumer: Consumer, partitions: list[TopicPartition]
                    ) -> set[tuple[str, int]]:
        """The first assignment after a loss: assign (here, not in confluent-kafka) every
        partition of it, each lost one that comes back from where this daemon stopped
        fetching it when the group's committed offset is not past that; forget the other
        lost ones. The partitions resumed, which are this daemon's as they were."""
        lost, self.lost = self.lost, set()
        tracker = self.datapath.tracker
        back = [TopicPartition(tp.topic, tp.partition) for tp in partitions
                if (tp.topic, tp.partition) in lost]
        try:
            committed = {(tp.topic, tp.partition): tp.offset
                         for tp in consumer.committed(back, timeout=10.0)} if back else {}
        except Exception as exc:  # the broker went again: read them from their commits
            log.warning("lost partitions came back, their committed offsets unknown (%s): "
                        "read again from the group's commits", exc)
            committed = {}
        resume_at = {}
        for tp, offset in committed.items():
            position = tracker.next_offset(tp)
            if position is not None and offset <= position:
                resume_at[tp] = position
        dropped = lost - resume_at.keys()
        if dropped:
            self.forget(dropped, self.datapath.stop_feeding(dropped))
        tracker.suspended -= lost
        if not resume_at:
            return set()
        consumer.incremental_assign([
            TopicPartition(tp.topic, tp.partition,
                           resume_at.get((tp.topic, tp.partition), tp.offset))
            for tp in partitions])
        # An assignment starts unpaused: a partition whose instances still hold too much
        # stays paused (the pause set kept it through the loss).
        index = self.fleet.topic_index
        still_paused = [TopicPartition(*tp) for tp in resume_at
                        if self.datapath.paused_by.get((index[tp[0]], tp[1]))]
        if still_paused:
            consumer.pause(still_paused)
        log.info("%d lost partitions are back: fed on from where this daemon was, nothing "
                 "replayed (%s)", len(resume_at),
                 ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(resume_at.items())))
        return set(resume_at)

    def forget(self, revoked: set[tuple[str, int]], keyed: set[tuple[int, int]]) -> None:
        """Partitions no longer this daemon's: out of the data path, the routers (their
        owners close the table shards) and the standby keeper."""
        self.datapath.forget(revoked, keyed)
        for topic in {t for t, _ in revoked}:
            for agent in self.fleet.subscriptions.get(topic, []):
                before = owners(agent)
                moved = agent.router.revoke([tp for tp in revoked if tp[0] == topic])
                self.datapath.release(agent, [tp for tp in revoked if tp[0] == topic], before)
                self.datapath.begin_moves(agent, moved, before)
        if self.keeper is not None:
            self.keeper.revoked(revoked)
        if self.fetchwatch is not None:
            self.fetchwatch.revoked(revoked)
