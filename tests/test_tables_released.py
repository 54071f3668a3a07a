"""A partition released to another instance is not this instance's any more: a late
read or write of its shard (a ``noack`` agent that acked its record, then wrote) is a
clear error, never a write into the closed shard nor a second owner re-opening it.
Real Kafka (the changelog) and RocksDB."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_tables_recovery import _Table

from agentlib.events import new_event
from agentlib.kafka import KafkaProducer
from agentlib.rawrecord import new_raw_record
from agentlib.tables.changelog import ChangelogRuntime, ShardReleased

pytestmark = pytest.mark.kafka


def _event(partition: int, offset: int):
    record = new_raw_record("words", partition, offset, None, b'"k"', b"{}", ())
    return new_event("k", {}, {}, record, None, None, None)


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_a_released_partitions_shard_is_neither_reopened_nor_written(
        kafka_bootstrap, new_topic, tmp_path, store):
    producer = KafkaProducer(f"kafka://{kafka_bootstrap}")
    runtime = ChangelogRuntime(tmp_path, producer=lambda: producer,
                               consumer_settings={"bootstrap.servers": kafka_bootstrap})
    table = _Table("counts", new_topic(2), store=store)

    async def scenario() -> None:
        shard = runtime.shard(table, 1)
        runtime.write(table, shard, _event(1, 0), b'"k"', b"1")
        runtime.release(1)  # flushes the window: the row goes to the changelog
        assert producer.flush(10.0) == 0

        with pytest.raises(ShardReleased, match=r"counts\[1\].*moved to another instance"):
            runtime.shard(table, 1)          # not opened again behind the new owner's back
        with pytest.raises(ShardReleased, match=r"counts\[1\]"):
            runtime.write(table, shard, _event(1, 1), b'"k"', b"2")  # a late noack write
        assert [s.partition for s in runtime.status()] == []

        runtime.claim(1)                     # the partition came back to this instance
        again = runtime.shard(table, 1)      # (a memory shard replays the changelog)
        assert again is not shard and json.loads(again.get(b'"k"')) == 1
    asyncio.run(scenario())
    runtime.close()
