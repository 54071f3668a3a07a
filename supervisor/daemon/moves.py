"""Partitions handed from one instance of an agent to another, without breaking order.

In ``partition`` ordering the router keeps each instance's share of partitions even;
when partitions arrive or leave (a rebalance), it may move a partition that an instance
still holds records of to another instance. If the new owner got the partition's next
records at once, it could finish them before the old owner finishes the earlier ones:
the partition's order (and every key's in it) would break.

So a move waits: the partition is paused, records of it fetched meanwhile are *held*
here (not given to either instance), and when the old owner holds nothing of the
partition any more (all acked, or revoked), the held records go to the new owner in
offset order and the partition resumes. Held records are already known to the offset
tracker, so they hold the commit back like any in-flight record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor.daemon.instances import AgentRuntime, Instance, Key

__all__ = ["Move", "PartitionMoves", "owners"]

TopicPartition = tuple[str, int]


@dataclass(eq=False)
class Move:
    """One partition on its way from ``old`` to ``new`` (same agent)."""

    agent: AgentRuntime
    tp: TopicPartition
    topic_index: int
    old: Instance
    new: Instance
    held: list[tuple[Key, bytes]] = field(default_factory=list)

    def old_done(self) -> bool:
        """True once the old owner holds no record of the partition."""
        return not self.old.unacked.holds(self.topic_index, self.tp[1])


def owners(agent: AgentRuntime) -> dict[TopicPartition, int]:
    """``{tp: instance index}`` of the agent's router now (before it changes)."""
    return {tp: index for index in range(len(agent.instances))
            for tp in agent.router.partitions_of(index)}


class PartitionMoves:
    """Moves in progress, keyed by ``(agent lane, tp)`` for the dispatch hot path."""

    def __init__(self) -> None:
        self.moving: dict[tuple[int, TopicPartition], Move] = {}

    def begin(self, agent: AgentRuntime, moved: dict[TopicPartition, int],
              before: dict[TopicPartition, int], topic_index: dict[str, int]) -> list[Move]:
        """Start waiting for the old owners of ``moved`` partitions; the new moves
        (the caller pauses their partitions). A partition its old owner holds nothing
        of moves at once."""
        started = []
        for tp, new_index in moved.items():
            old_index = before.get(tp)
            if old_index is None or old_index == new_index or (agent.lane, tp) in self.moving:
                continue
            move = Move(agent, tp, topic_index[tp[0]], agent.instances[old_index],
                        agent.instances[new_index])
            if not move.old_done():
                self.moving[(agent.lane, tp)] = move
                started.append(move)
        return started

    def finished(self) -> list[Move]:
        """Take out the moves whose old owner is done (the caller hands over ``held``)."""
        done = [move for move in self.moving.values() if move.old_done()]
        for move in done:
            del self.moving[(move.agent.lane, move.tp)]
        return done

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Revoked partitions: their held records go back to the broker with them."""
        for lane, tp in [key for key in self.moving if key[1] in revoked]:
            del self.moving[(lane, tp)]
