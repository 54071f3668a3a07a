"""A partition moved between instances of an agent keeps its order: records fetched
while the old owner still holds some of it are held, then handed to the new owner."""

from __future__ import annotations

from types import SimpleNamespace

from datapath_fakes import FakeConsumer, FakeMessage

from supervisor.config.loader import loads
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import AgentRuntime, Instance
from supervisor.daemon.router import Router
from supervisor.transport import wire
from supervisor.transport.ring import Ring


def make_datapath(tmp_path) -> tuple[DataPath, AgentRuntime, list[Ring]]:
    """A data path of its own: a fake consumer, one agent of two instances whose
    inbound rings the test reads (no supervisor, no processes)."""
    fleet = Fleet(loads(f'app = "x"\nstate_dir = "{tmp_path}"\n'), "")
    config = SimpleNamespace(ring_size=64 * 1024, poison_after=3, ordering="partition")
    agent = AgentRuntime("m.agent", 0, ("t",), config, "app")
    agent.router = Router("partition", 2)
    agent.instances = [Instance(agent, 0), Instance(agent, 1)]
    readers = []
    for inst in agent.instances:
        inst.inbound = Ring.create(64 * 1024)
        readers.append(Ring.attach(inst.inbound.fds()))
    fleet.add(agent)
    datapath = DataPath(FakeConsumer(), fleet)  # type: ignore[arg-type]
    agent.router.assign([("t", 0), ("t", 1)])
    return datapath, agent, readers


def offsets_in(reader: Ring) -> list[int]:
    views = reader.read_many(100)
    offsets = [wire.decode_record(view).offset for view in views]
    del views
    reader.release()
    return offsets


def test_a_moved_partition_waits_for_its_old_owner_then_continues_in_order(tmp_path):
    datapath, agent, readers = make_datapath(tmp_path)
    old_index = agent.router.owner(("t", 1))
    new_index = 1 - old_index
    old, new = agent.instances[old_index], agent.instances[new_index]
    datapath.dispatch([FakeMessage("t", 1, offset) for offset in range(5)])
    assert offsets_in(readers[old_index]) == [0, 1, 2, 3, 4]

    before = {("t", 1): old_index}
    datapath.begin_moves(agent, {("t", 1): new_index}, before)
    assert ("t", 1) in datapath.consumer.paused  # type: ignore[union-attr]
    datapath.dispatch([FakeMessage("t", 1, offset) for offset in range(5, 8)])
    datapath.finish_moves()
    assert offsets_in(readers[new_index]) == []  # the old owner still holds 0..4
    assert not any(key[1] == 1 and key[2] >= 5 for key in old.unacked)

    old.acked(0, 1, 0, 4)
    datapath.next_move_check = 0.0
    datapath.finish_moves()
    assert offsets_in(readers[new_index]) == [5, 6, 7]
    assert sorted(key[2] for key in new.unacked) == [5, 6, 7]
    assert ("t", 1) not in datapath.consumer.paused  # type: ignore[union-attr]
    assert not datapath.moves.moving


def test_a_partition_its_old_owner_is_done_with_moves_at_once(tmp_path):
    datapath, agent, _readers = make_datapath(tmp_path)
    old_index = agent.router.owner(("t", 0))
    datapath.begin_moves(agent, {("t", 0): 1 - old_index}, {("t", 0): old_index})
    assert not datapath.moves.moving
    assert not datapath.consumer.paused  # type: ignore[union-attr]


def test_revoking_a_moving_partition_drops_the_move(tmp_path):
    datapath, agent, _readers = make_datapath(tmp_path)
    old_index = agent.router.owner(("t", 1))
    datapath.dispatch([FakeMessage("t", 1, 0)])
    datapath.begin_moves(agent, {("t", 1): 1 - old_index}, {("t", 1): old_index})
    assert datapath.moves.moving
    datapath.moves.forget({("t", 1)})
    assert not datapath.moves.moving
