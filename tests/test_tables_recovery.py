"""Recovery is visible: a shard rebuilt from a real changelog logs its progress (percent
of the offsets to replay, rows/s) and its final line, and reports itself recovering,
then active and caught up, with its rows on disk (RocksDB) counted."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import kafkatools
import pytest

from agentlib.tables.changelog import ChangelogRuntime, ShardStatus

pytestmark = pytest.mark.kafka


@dataclass
class _Table:
    """What the runtime reads of a table."""

    name: str
    changelog_topic_name: str
    store: str | None = None
    is_global: bool = False


def test_a_replay_logs_percent_and_rate_then_reports_the_shard_active_and_caught_up(
        kafka_bootstrap, new_topic, tmp_path, caplog):
    changelog = new_topic(1)
    rows = 9000  # several consume batches of the replay (RECOVERY_BATCH each at most)
    kafkatools.produce(kafka_bootstrap, changelog,
                       [(json.dumps(f"k{i % 300}").encode(), json.dumps(i).encode())
                        for i in range(rows)], partition=0)
    runtime = ChangelogRuntime(tmp_path, producer=lambda: None,
                               consumer_settings={"bootstrap.servers": kafka_bootstrap},
                               progress_log_every=0.0)
    reports: list[list[ShardStatus]] = []
    runtime.on_progress = lambda: reports.append(runtime.status())
    table = _Table("counts", changelog)
    with caplog.at_level(logging.INFO, logger="agentd.tables"):
        shard = runtime.open(table, 0)
    lines = [r.getMessage() for r in caplog.records]

    progress = [line for line in lines if "recovering," in line]
    assert progress, lines
    percents = [float(re.search(r"recovering, (\d+)% of offsets 0\.\.8999, (\d+) rows/s",
                                line).group(1)) for line in progress]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(f"table counts[0]: recovered {rows} rows in" in line for line in lines)

    first, last = reports[0], reports[-1]
    assert [(s.table, s.partition, s.state, s.changelog_lag) for s in first] == \
        [("counts", 0, "recovering", rows)]
    assert len(last) == 1 and last[0].state == "active"
    assert last[0].changelog_offset == rows - 1 and last[0].changelog_lag == 0
    assert last[0].recovered_rows == rows
    assert last[0].keys_estimated and last[0].keys >= 300  # RocksDB's estimate
    assert last[0].disk_bytes > 0
    assert json.loads(shard.get(json.dumps("k299").encode())) == rows - 1

    # Reopened after a release: the shard holds everything, nothing is replayed.
    runtime.release(0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="agentd.tables"):
        runtime.open(table, 0)
    assert not any("recover" in r.getMessage() for r in caplog.records)
    [again] = runtime.status()
    assert (again.state, again.changelog_lag, again.recovered_rows) == ("active", 0, rows)
    runtime.close()


def test_a_memory_shard_reports_its_exact_key_count_and_no_disk(kafka_bootstrap, new_topic,
                                                                tmp_path):
    changelog = new_topic(2)
    kafkatools.produce(kafka_bootstrap, changelog,
                       [(json.dumps(f"k{i % 7}").encode(), b"1") for i in range(50)],
                       partition=1)
    runtime = ChangelogRuntime(tmp_path, producer=lambda: None,
                               consumer_settings={"bootstrap.servers": kafka_bootstrap})
    table = _Table("mem", changelog, store="memory://")
    runtime.open(table, 0)  # an empty changelog partition: nothing to replay
    runtime.open(table, 1)
    assert [(s.partition, s.state, s.keys, s.keys_estimated, s.disk_bytes, s.changelog_lag)
            for s in runtime.status()] == [(0, "active", 0, False, 0, 0),
                                           (1, "active", 7, False, 0, 0)]
    runtime.close()
