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
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import DataPath
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

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for topic in {tp.topic for tp in partitions}:
            tps = [(tp.topic, tp.partition) for tp in partitions if tp.topic == topic]
            for agent in self.fleet.subscriptions.get(topic, []):
                before = owners(agent)
                self.datapath.begin_moves(agent, agent.router.assign(tps), before)
        if self.keeper is not None:
            self.keeper.assigned((tp.topic, tp.partition) for tp in partitions)
        if self.txfeed is not None:
            self.txfeed.rebalanced(consumer)
        log.info("assigned %d partitions", len(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Stop feeding these partitions, wait (bounded) for their acks, commit, forget."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        keyed = self.datapath.stop_feeding(revoked)
        self.await_acks(keyed)
        self.committer.commit(asynchronous=False, only=revoked)
        self.datapath.forget(revoked, keyed)
        for topic in {t for t, _ in revoked}:
            for agent in self.fleet.subscriptions.get(topic, []):
                before = owners(agent)
                moved = agent.router.revoke([tp for tp in revoked if tp[0] == topic])
                self.datapath.release(agent, [tp for tp in revoked if tp[0] == topic], before)
                self.datapath.begin_moves(agent, moved, before)
        if self.keeper is not None:
            self.keeper.revoked(revoked)
        log.info("revoked %d partitions", len(partitions))
