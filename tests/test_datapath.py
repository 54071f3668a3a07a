"""One message's walk through the daemon's parts, without a supervisor or a broker:
DataPath (fetch → route → encode → ring) then Committer (ack → tracker → commit), on
real rings, with the test playing the worker at the far end of each ring."""

from __future__ import annotations

from types import SimpleNamespace

from datapath_fakes import FakeConsumer, FakeMessage

from supervisor.config.loader import loads
from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import AgentRuntime, Instance
from supervisor.daemon.router import Router
from supervisor.transport import wire
from supervisor.transport.ring import Ring

RING = 64 * 1024


class WorkerEnd:
    """The instance process's ends of its two rings."""

    def __init__(self, inst: Instance) -> None:
        inst.inbound, inst.outbound = Ring.create(RING), Ring.create(RING)
        self.inbound = Ring.attach(inst.inbound.fds())
        self.outbound = Ring.attach(inst.outbound.fds())

    def take(self) -> list[wire.DecodedRecord]:
        views = self.inbound.read_many(100)
        records = [wire.decode_record(view) for view in views]
        del views
        self.inbound.release()
        return records

    def ack(self, record: wire.DecodedRecord) -> None:
        assert self.outbound.try_write(wire.encode_ack(
            record.topic_index, record.partition, record.offset, record.offset))


def agent(name: str, lane: int) -> AgentRuntime:
    config = SimpleNamespace(ring_size=RING, poison_after=3, ordering="partition")
    runtime = AgentRuntime(name, lane, ("t",), config, "app")
    runtime.router = Router("partition", 1)
    runtime.instances = [Instance(runtime, 0)]
    runtime.router.assign([("t", 0)])
    return runtime


def parts(tmp_path, *agents: AgentRuntime) -> tuple[DataPath, Committer, FakeConsumer]:
    fleet = Fleet(loads(f'app = "x"\nstate_dir = "{tmp_path}"\n'), "")
    for runtime in agents:
        fleet.add(runtime)
    consumer = FakeConsumer()
    datapath = DataPath(consumer, fleet)  # type: ignore[arg-type]
    committer = Committer(datapath.tracker, fleet, on_report=lambda inst, record: None)
    committer.consumer = consumer
    return datapath, committer, consumer


def test_a_fetched_record_reaches_its_instance_and_its_ack_commits_the_next_offset(tmp_path):
    relay = agent("m.relay", 0)
    datapath, committer, consumer = parts(tmp_path, relay)
    worker = WorkerEnd(relay.instances[0])
    consumer.queued = [FakeMessage("t", 0, 41)]

    assert datapath.fetch(busy=False, waiting=False)
    (record,) = worker.take()
    assert (record.partition, record.offset, record.value) == (0, 41, b"v41")
    committer.commit(asynchronous=True)
    assert consumer.commits == [{("t", 0): 41}]  # not acked: a restart reads it again

    worker.ack(record)
    assert committer.read_acks()
    committer.commit(asynchronous=True)
    assert consumer.commits[-1] == {("t", 0): 42}
    assert not relay.instances[0].unacked    # a crash now re-dispatches nothing


def test_a_record_is_committed_only_once_every_agent_reading_its_topic_acked_it(tmp_path):
    first, second = agent("m.first", 0), agent("m.second", 1)
    datapath, committer, consumer = parts(tmp_path, first, second)
    first_end, second_end = WorkerEnd(first.instances[0]), WorkerEnd(second.instances[0])
    consumer.queued = [FakeMessage("t", 0, 0), FakeMessage("t", 0, 1)]

    datapath.fetch(busy=True, waiting=False)
    for record in first_end.take():
        first_end.ack(record)
    committer.read_acks()
    committer.commit(asynchronous=True)
    assert consumer.commits == [{("t", 0): 0}]  # the second agent still holds both

    second_records = second_end.take()
    second_end.ack(second_records[0])
    committer.read_acks()
    committer.commit(asynchronous=True)
    assert consumer.commits[-1] == {("t", 0): 1}
