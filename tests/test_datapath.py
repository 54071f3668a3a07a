"""One message's walk through the daemon's parts, without a supervisor or a broker:
DataPath (fetch → route → encode → ring) then Committer (ack → tracker → commit), on
real rings, with the test playing the worker at the far end of each ring."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from datapath_fakes import FakeConsumer, FakeMessage
from loop_paths import COMPILED_COPY, LOOPS

from supervisor.config.loader import loads
from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import AgentRuntime, Instance
from supervisor.daemon.router import Router
from supervisor.transport import runscan, wire
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


def agent(name: str, lane: int, ordering: str = "partition", instances: int = 1
          ) -> AgentRuntime:
    config = SimpleNamespace(ring_size=RING, poison_after=3, ordering=ordering)
    runtime = AgentRuntime(name, lane, ("t",), config, "app")
    runtime.router = Router(ordering, instances)
    runtime.instances = [Instance(runtime, i) for i in range(instances)]
    runtime.router.assign([("t", 0), ("t", 1)])
    return runtime


class PolicyProbe:
    """Stands in for the error policy: records each failed record with what the
    offset tracker held for its partition when the policy got it."""

    def __init__(self, datapath: DataPath) -> None:
        self.datapath = datapath
        self.failed: list[tuple[int, int, str, list[int]]] = []

    def fail(self, record) -> None:
        lane = self.datapath.tracker.lane((record.topic, record.partition), record.lane)
        self.failed.append((record.partition, record.offset, record.reason,
                            list(lane.pending)))


@pytest.fixture(autouse=True, params=LOOPS)
def loop(request, monkeypatch):
    """Every test here runs on both per-message loops (compiled and pure Python): the
    run scan and the ring's record copy."""
    monkeypatch.setattr("supervisor.daemon.datapath.scan_run", request.param)
    pure = request.param is runscan.scan_run_py
    monkeypatch.setattr(runscan, "copy_records",
                        runscan.copy_records_py if pure else COMPILED_COPY)
    return request.param


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


def test_interleaved_partitions_reach_the_ring_in_fetch_order_and_every_offset_is_tracked(
        tmp_path):
    relay = agent("m.relay", 0)
    datapath, _committer, _consumer = parts(tmp_path, relay)
    worker = WorkerEnd(relay.instances[0])
    fetched = [FakeMessage("t", p, o) for o, p in
               [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (2, 1), (3, 1), (3, 0)]]

    datapath.dispatch(fetched)
    assert [(r.partition, r.offset) for r in worker.take()] == \
        [(m.partition(), m.offset()) for m in fetched]
    assert list(datapath.tracker.lane(("t", 0)).pending) == [0, 1, 2, 3]
    assert list(datapath.tracker.lane(("t", 1)).pending) == [0, 1, 2, 3]
    assert list(relay.instances[0].unacked) == [(0, m.partition(), m.offset())
                                                 for m in fetched]


def test_key_ordering_sends_each_key_to_one_instance_and_tracks_every_offset(tmp_path):
    keyed = agent("m.keyed", 0, ordering="key", instances=2)
    datapath, _committer, _consumer = parts(tmp_path, keyed)
    ends = [WorkerEnd(inst) for inst in keyed.instances]
    keys = [b"a", b"b", b"c", b"a", None, b"b", b"a"]
    datapath.dispatch([FakeMessage("t", 0, o, key=k) for o, k in enumerate(keys)])

    got = [[(r.offset, r.key) for r in end.take()] for end in ends]
    assert sorted(o for records in got for o, _ in records) == list(range(len(keys)))
    for key in (b"a", b"b", b"c"):  # one instance per key, in offset order
        holders = [i for i, records in enumerate(got) if any(k == key for _, k in records)]
        assert len(holders) == 1
    for records in got:
        assert [o for o, _ in records] == sorted(o for o, _ in records)
    assert list(datapath.tracker.lane(("t", 0)).pending) == list(range(len(keys)))


def test_a_record_too_large_for_the_ring_goes_to_the_policy_and_the_rest_to_the_ring(
        tmp_path):
    relay = agent("m.relay", 0)
    datapath, _committer, _consumer = parts(tmp_path, relay)
    policy = datapath.failures = PolicyProbe(datapath)  # type: ignore[assignment]
    worker = WorkerEnd(relay.instances[0])
    datapath.dispatch([FakeMessage("t", 0, 0), FakeMessage("t", 0, 1, value=b"x" * RING),
                       FakeMessage("t", 0, 2)])

    assert [r.offset for r in worker.take()] == [0, 2]
    ((partition, offset, reason, tracked),) = policy.failed
    assert (partition, offset) == (0, 1) and "exceeds the ring" in reason
    assert tracked == [0, 1]  # in the tracker before the policy may ack it
    assert list(datapath.tracker.lane(("t", 0)).pending) == [0, 1, 2]
    assert list(relay.instances[0].unacked) == [(0, 0, 0), (0, 0, 2)]


def test_a_header_name_that_is_not_utf8_fails_only_its_record(tmp_path):
    relay = agent("m.relay", 0)
    datapath, _committer, _consumer = parts(tmp_path, relay)
    policy = datapath.failures = PolicyProbe(datapath)  # type: ignore[assignment]
    worker = WorkerEnd(relay.instances[0])
    bad = SystemError("<built-in method headers> returned a result with an error set")
    datapath.dispatch([FakeMessage("t", 0, 0), FakeMessage("t", 0, 1, headers=bad),
                       FakeMessage("t", 0, 2, headers=[("h", b"1")])])

    taken = worker.take()
    assert [(r.offset, r.headers) for r in taken] == [(0, ()), (2, (("h", b"1"),))]
    ((partition, offset, reason, tracked),) = policy.failed
    assert (partition, offset) == (0, 1) and "not UTF-8" in reason
    assert tracked == [0, 1]
    assert list(datapath.tracker.lane(("t", 0)).pending) == [0, 1, 2]


def drain(worker: WorkerEnd, datapath: DataPath, committer: Committer) -> None:
    """The worker takes and acks everything its ring holds, the loop pumps the
    backlog in, until both are empty (resumes happen on the way)."""
    inst = datapath.instances[0]
    while True:
        records = worker.take()
        for record in records:
            worker.ack(record)
        committer.read_acks()
        datapath.pump_instances()
        if not records and not inst.pending:
            return


def test_a_resume_seeks_each_partition_to_where_the_consumer_is_so_the_fetcher_wakes(
        tmp_path):
    # librdkafka's resume does not wake the broker's fetcher: with every partition
    # paused it slept up to a second (instances idle; issue 21's throughput fall).
    # The seek to the consumer's own position is what wakes it, and moves nothing.
    relay = agent("m.relay", 0)
    datapath, committer, consumer = parts(tmp_path, relay)
    worker = WorkerEnd(relay.instances[0])
    consumer.queued = [FakeMessage("t", p, o) for o in range(5000) for p in (0, 1)]
    while consumer.queued and not consumer.paused:
        datapath.fetch(busy=True, waiting=False)
    assert consumer.paused == {("t", 0), ("t", 1)}     # the backlog passed high water
    assert consumer.seeks == []                        # a pause seeks nothing
    where = dict(consumer.positions)

    drain(worker, datapath, committer)

    assert not consumer.paused
    assert sorted(consumer.seeks) == sorted((t, p, o) for (t, p), o in where.items())
    assert all(o < 5000 for o in where.values())       # paused mid-partition


class ShyConsumer(FakeConsumer):
    """A consumer that has no position for t[1] and refuses every seek (a partition
    revoked meanwhile)."""

    def position(self, tps):
        found = super().position(tps)
        for tp in found:
            if tp.partition == 1:
                tp.offset = -1001
        return found

    def seek(self, tp):
        super().seek(tp)
        from confluent_kafka import KafkaError, KafkaException
        raise KafkaException(KafkaError(KafkaError._STATE, "not assigned"))


def test_a_resume_whose_seek_fails_or_has_no_position_still_resumes(tmp_path):
    relay = agent("m.relay", 0)
    datapath, committer, _ = parts(tmp_path, relay)
    consumer = ShyConsumer([FakeMessage("t", p, o) for o in range(1500) for p in (0, 1)])
    datapath.consumer = committer.consumer = consumer
    worker = WorkerEnd(relay.instances[0])
    while consumer.queued and not consumer.paused:
        datapath.fetch(busy=True, waiting=False)
    assert consumer.paused == {("t", 0), ("t", 1)}

    drain(worker, datapath, committer)

    assert not consumer.paused and not datapath.paused_by
    assert [(t, p) for t, p, _o in consumer.seeks] == [("t", 0)]  # t[1]: no position
