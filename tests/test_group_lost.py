"""Partitions the group took from this daemon without a revoke (issue 20): its session
expired while the broker was away. The daemon keeps their work; when they come back
it feeds on from where it was instead of replaying from the last commit, and it
commits nothing for them meanwhile. Real data path, offset tracker, instances and
rings; a fake consumer plays the group."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from confluent_kafka import OFFSET_INVALID, TopicPartition
from datapath_fakes import FakeConsumer, FakeMessage

from supervisor.config.loader import loads
from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.group import GroupMember
from supervisor.daemon.instances import AgentRuntime, Instance
from supervisor.daemon.router import Router
from supervisor.transport import wire
from supervisor.transport.ring import Ring

RING = 64 * 1024
T0, T1 = ("t", 0), ("t", 1)


class GroupConsumer(FakeConsumer):
    """The fake consumer, plus the group's committed offsets and explicit assignments."""

    def __init__(self) -> None:
        super().__init__()
        self.group_committed: dict[tuple[str, int], int] = {}
        self.assigned: list[tuple[str, int, int]] | None = None

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition,
                               self.group_committed.get((tp.topic, tp.partition),
                                                        OFFSET_INVALID)) for tp in tps]

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in tps]


class Daemon:
    """One agent with one instance on partitions t[0] and t[1], the test as its worker."""

    def __init__(self, tmp_path: Any, transactional: bool = False) -> None:
        config = SimpleNamespace(ring_size=RING, poison_after=3, ordering="partition")
        self.agent = AgentRuntime("m.relay", 0, ("t",), config, "app")
        self.agent.router = Router("partition", 1)
        self.inst = Instance(self.agent, 0)
        self.agent.instances = [self.inst]
        fleet = Fleet(loads(f'app = "x"\nstate_dir = "{tmp_path}"\n'), "")
        fleet.add(self.agent)
        self.consumer = GroupConsumer()
        self.datapath = DataPath(self.consumer, fleet)  # type: ignore[arg-type]
        self.committer = Committer(self.datapath.tracker, fleet, lambda inst, record: None)
        self.committer.consumer = self.consumer
        self.committer.transactional = transactional
        self.waited: list[set[tuple[int, int]]] = []
        self.group = GroupMember(fleet, self.datapath, self.committer, self.waited.append)
        self.inst.inbound, self.inst.outbound = Ring.create(RING), Ring.create(RING)
        self.inbound = Ring.attach(self.inst.inbound.fds())
        self.outbound = Ring.attach(self.inst.outbound.fds())
        self.group.on_assign(self.consumer, [TopicPartition(*T0), TopicPartition(*T1)])

    def feed(self, tp: tuple[str, int], offsets: range) -> list[int]:
        """Fetch and dispatch ``offsets`` of ``tp``; the offsets the worker was given."""
        self.consumer.queued = [FakeMessage(tp[0], tp[1], o) for o in offsets]
        while self.consumer.queued:
            self.datapath.fetch(busy=True, waiting=False)
        views = self.inbound.read_many(1000)
        given = [wire.decode_record(view).offset for view in views if view[0] == wire.RECORD]
        del views
        self.inbound.release()
        return given

    def ack(self, tp: tuple[str, int], first: int, last: int) -> None:
        assert self.outbound.try_write(wire.encode_ack(0, tp[1], first, last))
        assert self.committer.read_acks()

    def commit(self) -> dict[tuple[str, int], int]:
        self.consumer.commits.clear()
        self.committer.commit(asynchronous=True)
        return {tp: o for commit in self.consumer.commits for tp, o in commit.items()}

    def lose(self, *tps: tuple[str, int]) -> None:
        self.group.on_lost(self.consumer, [TopicPartition(*tp) for tp in tps])

    def assign(self, *tps: tuple[str, int]) -> None:
        self.group.on_assign(self.consumer, [TopicPartition(*tp) for tp in tps])


def committed_then_ahead(tmp_path: Any) -> Daemon:
    """t[0]: 0-9 dispatched, 0-4 acked and committed, 5-7 acked after the last commit,
    8-9 in flight."""
    daemon = Daemon(tmp_path)
    assert daemon.feed(T0, range(10)) == list(range(10))
    daemon.ack(T0, 0, 4)
    assert daemon.commit() == {T0: 5}
    daemon.committer.on_commit(None, [TopicPartition("t", 0, 5)])
    daemon.ack(T0, 5, 7)
    daemon.consumer.group_committed[T0] = 5
    return daemon


def test_a_lost_partition_that_comes_back_is_fed_on_from_where_the_daemon_was(tmp_path):
    daemon = committed_then_ahead(tmp_path)
    daemon.lose(T0, T1)
    assert daemon.commit() == {}            # not this daemon's meanwhile: nothing committed
    daemon.ack(T0, 8, 8)                    # the instance goes on with what it holds
    daemon.assign(T0, T1)
    # Fetching goes on at 10, not at the group's 5: 5-8 are done, 9 is still held.
    assert daemon.consumer.assigned == [("t", 0, 10), ("t", 1, OFFSET_INVALID)]
    assert list(daemon.inst.unacked) == [(0, 0, 9)]
    assert daemon.commit() == {T0: 9}       # what was acked meanwhile is committed now
    assert daemon.feed(T0, range(10, 12)) == [10, 11]
    daemon.ack(T0, 9, 11)
    assert daemon.commit() == {T0: 12}


def test_a_lost_partition_keeps_its_pause_when_it_comes_back(tmp_path):
    daemon = committed_then_ahead(tmp_path)
    daemon.datapath.pause(daemon.inst, [(0, 0)])
    daemon.lose(T0)
    daemon.consumer.paused.clear()          # a new assignment starts unpaused
    daemon.assign(T0)
    assert daemon.consumer.assigned == [("t", 0, 10)]
    assert daemon.consumer.paused == {T0}


def test_a_lost_partition_another_member_moved_past_this_daemon_is_read_from_its_commit(
        tmp_path):
    daemon = committed_then_ahead(tmp_path)
    daemon.lose(T0)
    daemon.consumer.group_committed[T0] = 20  # another daemon had it meanwhile
    daemon.assign(T0)
    assert daemon.consumer.assigned is None   # confluent-kafka assigns at the commit
    assert not daemon.inst.unacked            # its records are not this daemon's any more
    assert daemon.commit() == {}
    assert daemon.feed(T0, range(20, 22)) == [20, 21]
    daemon.ack(T0, 20, 21)
    assert daemon.commit() == {T0: 22}


def test_lost_partitions_the_next_assignment_leaves_out_are_forgotten(tmp_path):
    daemon = committed_then_ahead(tmp_path)
    daemon.lose(T0, T1)
    daemon.assign(T1)
    assert daemon.consumer.assigned is None
    assert not daemon.inst.unacked
    assert daemon.agent.router.route(T1, None) == 0
    daemon.ack(T0, 8, 9)                      # a late ack of a forgotten partition
    assert daemon.commit() == {}


def test_under_exactly_once_a_lost_partition_is_revoked(tmp_path):
    daemon = Daemon(tmp_path, transactional=True)
    daemon.feed(T0, range(3))
    daemon.lose(T0)
    assert daemon.waited == [{(0, 0)}]        # the revoke path: acks awaited, then forgotten
    assert not daemon.inst.unacked
    assert not daemon.group.lost
