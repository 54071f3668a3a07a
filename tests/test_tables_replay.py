"""A shard's catch-up from its changelog on real Kafka and a real RocksDB: every row of a
changelog longer than one replay batch, tombstones, the marks the rows carried, and
rows the shard already holds skipped by their mark."""

from __future__ import annotations

import json

import kafkatools
import pytest

import agentlib
from agentlib.tables import changelog
from agentlib.tables.shards import RocksShard


def runtime_for(bootstrap: str, table_dir) -> changelog.ChangelogRuntime:
    return changelog.ChangelogRuntime(table_dir, producer=lambda: None,
                                      consumer_settings={"bootstrap.servers": bootstrap})


def marked(key: str, value: int | None, topic: str, offset: int) -> tuple:
    header = (changelog.MARK_HEADER, changelog.encode_mark(topic, (offset, 0)))
    encoded = None if value is None else json.dumps(value).encode()
    return (json.dumps(key).encode(), encoded, [header])


@pytest.mark.kafka
def test_an_empty_shard_is_rebuilt_with_every_row_and_the_last_mark_of_each_source(
        kafka_bootstrap, tmp_path):
    app_id = kafkatools.unique_name("recovery")
    table = agentlib.App(app_id).Table("counts", default=int)
    kafkatools.create_topic(kafka_bootstrap, table.changelog_topic_name, 2)
    rows = changelog.RECOVERY_BATCH * 2 + 123  # several batches, the last one short
    items = [marked(f"r{i}", i, "src-a" if i % 3 else "src-b", i) for i in range(rows)]
    items += [marked("r5", None, "src-a", rows)]  # a tombstone deletes r5
    kafkatools.produce(kafka_bootstrap, table.changelog_topic_name, items, partition=1)

    runtime = runtime_for(kafka_bootstrap, tmp_path)
    shard = runtime.shard(table, 1)
    stats = runtime.recoveries[("counts", 1)]
    assert stats.rows == rows + 1 and stats.skipped == 0
    assert shard.changelog_offset == rows
    assert len(shard) == rows - 1
    assert shard.get(b'"r5"') is None and shard.get(b'"r7"') == b"7"
    last_b = max(i for i in range(rows) if i % 3 == 0)
    assert shard.mark("src-a") == (rows, 0) and shard.mark("src-b") == (last_b, 0)
    runtime.close()

    reopened = RocksShard(tmp_path / "counts" / "1", 1)  # all of it was persisted
    assert reopened.changelog_offset == rows and reopened.mark("src-b") == (last_b, 0)
    reopened.close()


@pytest.mark.kafka
def test_replayed_rows_whose_mark_the_shard_holds_are_skipped(kafka_bootstrap, tmp_path):
    app_id = kafkatools.unique_name("recovery-skip")
    table = agentlib.App(app_id).Table("counts", default=int)
    kafkatools.create_topic(kafka_bootstrap, table.changelog_topic_name, 1)
    # The shard wrote source offset 100 itself; its changelog offset never got noted.
    held = RocksShard(tmp_path / "counts" / "0", 0)
    held.write(b'"a"', b"5", "src", (100, 0))
    held.close()
    kafkatools.produce(kafka_bootstrap, table.changelog_topic_name, [
        marked("a", 4, "src", 99), marked("a", 5, "src", 100), marked("b", 1, "src", 101),
        (b'"c"', b"9")], partition=0)  # a row without a mark is applied

    runtime = runtime_for(kafka_bootstrap, tmp_path)
    shard = runtime.shard(table, 0)
    stats = runtime.recoveries[("counts", 0)]
    assert (stats.rows, stats.skipped) == (2, 2)
    assert [shard.get(k) for k in (b'"a"', b'"b"', b'"c"')] == [b"5", b"1", b"9"]
    assert shard.mark("src") == (101, 0) and shard.changelog_offset == 3
    runtime.close()
