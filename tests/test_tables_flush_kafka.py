"""The write-back cache on real Kafka and a real RocksDB, through a real instance
``Worker`` (stand-in rings, as ``bench/tables_inproc.py``): a flush window's counts
reach the changelog as one row per updated key, and no record is acked to the
supervisor (which commits only acked offsets) before the broker acknowledged every row
of the flush that carries its writes. The changelog producer is made to linger 1 s, so
that a flush produced but not yet delivered lasts long enough to be seen."""

from __future__ import annotations

import asyncio
import collections
import json
import os
from typing import Any

import kafkatools
import pytest
from confluent_kafka import Consumer, TopicPartition

import agentlib
import agentlib.kafka
import agentlib.seam as seam
from agentlib.tables import runtime as runtimes
from agentlib.tables.replay import MARK_HEADER, decode_mark
from supervisor.instance.tables import InstanceTables
from supervisor.instance.worker import READ_BATCH, Worker
from supervisor.transport import wire

KEYS = 10
RECORDS = 1000


class Inbound:
    """The worker's inbound ring: hands out encoded records in READ_BATCH slices."""

    def __init__(self, records: list[bytes]) -> None:
        self.records, self.pos = records, 0

    def read_many(self, n: int) -> list[memoryview]:
        out = [memoryview(r) for r in self.records[self.pos:self.pos + min(n, READ_BATCH)]]
        self.pos += len(out)
        return out

    def release(self) -> None:
        pass

    def prepare_read_sleep(self) -> bool:
        return True


class Outbound:
    """The worker's outbound ring: keeps the ACK ranges it is given."""

    def __init__(self) -> None:
        self.acks: list[wire.Ack] = []

    def write_many(self, records: list[bytes]) -> int:
        self.acks += [wire.decode_ack(r) for r in records if r[0] == wire.ACK]
        return len(records)


def make_worker(agent: Any, topic: str, records: list[bytes], table_dir: str) -> Worker:
    """What ``Worker.__init__`` does, minus attaching rings (as bench/tables_inproc.py)."""
    worker = Worker.__new__(Worker)
    worker.inbound = Inbound(records)  # type: ignore[assignment]
    worker.outbound = Outbound()  # type: ignore[assignment]
    worker.agent, worker.name = agent, agent.name
    worker.settings = {"agent": agent.name, "topics": [topic]}
    worker.topics, worker.topic_index = [topic], {topic: 0}
    worker.max_in_flight = 4096
    worker._raw_record, worker._verdict = seam.new_raw_record, seam.ErrorVerdict
    worker.host = seam.AgentHost(agent, on_done=worker.on_done, on_error=worker.on_error)
    worker.tables = InstanceTables.install(agent, table_dir, None)
    worker.txn = None
    worker._fed, worker._done, worker._done_by_name, worker._outbox = {}, {}, {}, []
    worker._flush_scheduled = worker._throttled = worker._stopping = False
    worker.processed = 0
    return worker


def changelog_rows(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        rows: list[Any] = []
        while len(rows) < count:
            rows += [m for m in consumer.consume(count - len(rows), 10.0) if not m.error()]
        return rows
    finally:
        consumer.close()


@pytest.mark.kafka
def test_a_flush_writes_one_row_per_key_and_its_records_are_acked_only_once_delivered(
        kafka_bootstrap, tmp_path, monkeypatch):
    monkeypatch.setattr(runtimes, "_runtime", runtimes.current())  # (installed per process)
    monkeypatch.setattr(agentlib.kafka, "CHANGELOG_LINGER_MS", 1000)
    monkeypatch.setenv("AGENTD_BROKER", kafka_bootstrap)
    app_id, source = kafkatools.unique_name("flush"), kafkatools.unique_name("flush-in")
    app = agentlib.App(app_id, broker=f"kafka://{kafka_bootstrap}")
    counts = app.Table("counts", default=int)
    changelog = counts.changelog_topic_name
    kafkatools.create_topic(kafka_bootstrap, changelog, 1)

    @app.agent(app.topic(source))
    async def count(stream: Any) -> None:
        async for event in stream.events():
            counts[event.key] += 1

    records = [wire.encode_record(0, 0, offset, 1_764_000_000_000, f"k{offset % KEYS}".encode(),
                                  b"{}", None) for offset in range(RECORDS)]
    watermark = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "t"})

    def delivered() -> int:
        return int(watermark.get_watermark_offsets(TopicPartition(changelog, 0), 10.0)[1])

    async def run() -> tuple[list[wire.Ack], list[tuple[int, int]]]:
        worker = make_worker(count, source, records, str(tmp_path))
        worker._loop = asyncio.get_running_loop()
        worker._exit = worker._loop.create_future()
        await worker.host.start()
        assert worker.tables is not None
        worker.tables.open_partition(0)
        seen: list[tuple[int, int]] = []  # (records acked, changelog rows delivered)
        worker.pump()
        while not worker.outbound.acks or worker.outbound.acks[-1].last < RECORDS - 1:
            acked = sum(a.last - a.first + 1 for a in worker.outbound.acks)  # read first
            seen.append((acked, await asyncio.to_thread(delivered)))
            if worker.inbound.pos < RECORDS and not worker._throttled:
                worker.pump()
            await asyncio.sleep(0.02)
        seen.append((RECORDS, await asyncio.to_thread(delivered)))
        await worker.host.stop(5.0)
        worker.tables.close()
        return worker.outbound.acks, seen

    try:
        acks, seen = asyncio.run(asyncio.wait_for(run(), 60))
        produced = delivered()
    finally:
        watermark.close()
    rows = changelog_rows(kafka_bootstrap, changelog, produced)
    # One row per key and flush, not one per write (1,000 on main): counts exact.
    flushes = sum(dict(m.headers())[MARK_HEADER].count(b"\x1f") == 2 for m in rows)
    assert flushes >= 1 and len(rows) <= KEYS * flushes and len(rows) <= RECORDS // 10
    latest = {m.key(): json.loads(m.value()) for m in rows}
    assert latest == {json.dumps(f"k{i}").encode(): RECORDS // KEYS for i in range(KEYS)}
    per_flush = collections.Counter()
    for message in rows:
        header = dict(message.headers())[MARK_HEADER]
        per_flush[message.key()] += 1
        if header.count(b"\x1f") == 2:  # a flush's last row: its keys were each once
            assert max(per_flush.values()) == 1
            per_flush.clear()
    assert not per_flush and decode_mark(header) == (source, (RECORDS - 1, 0))
    # Acked only once delivered: whenever some records were acked, every row of their
    # flush was in the changelog; and the 1 s linger left a moment where the flush was
    # produced and nothing was acked yet.
    assert all(delivered >= KEYS for acked, delivered in seen if acked), seen
    assert any(not acked and not delivered for acked, delivered in seen[5:]), seen
    assert sum(a.last - a.first + 1 for a in acks) == RECORDS
    assert os.listdir(tmp_path / app_id / "counts")  # (a RocksDB shard on disk)
