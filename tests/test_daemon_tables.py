"""Tables under agentd on real Kafka: counts exact with two instances writing their own
partitions, through instance kills (the shard's marks skip redelivered records), and
after a restart that rebuilds the shards from the changelog."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from collections import Counter

import kafkatools
import pytest
from agentdproc import Agentd

COUNTING_APP = '''
import os
import time
import agentlib as faust

app = faust.App(os.environ.get("APP_ID", "tables-count"))
source = app.topic(os.environ["IN_TOPIC"], key_type=str, value_type=bytes,
                   value_serializer="raw")
counts = app.Table("word_counts", default=int)
DELAY = float(os.environ.get("DELAY", "0"))


@app.agent(source)
async def count(stream):
    async for event in stream.events():
        counts[event.key] += 1
        if DELAY:
            time.sleep(DELAY)
'''

def changelog_counts(bootstrap: str, app_id: str) -> dict[str, int]:
    """The latest row per key in the table's changelog (what a rebuild would hold)."""
    rows: dict[str, int] = {}
    for record in kafkatools.read_to_end(bootstrap, f"{app_id}-word_counts-changelog"):
        key = json.loads(record.key)
        if record.value is None:
            rows.pop(key, None)
        else:
            rows[key] = json.loads(record.value)
    return rows


def run_until_committed(daemon: Agentd, bootstrap: str, group: str, topic: str,
                        kill_every: float | None = None) -> int:
    daemon.wait_consuming()
    kills = 0
    deadline = time.monotonic() + 180
    while not kafkatools.committed_equals_end(bootstrap, group, topic):
        assert time.monotonic() < deadline, "the run did not finish"
        daemon.assert_running()
        if kill_every is not None:
            pids = daemon.instance_pids()
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
                kills += 1
            time.sleep(kill_every)
        else:
            time.sleep(0.2)
    return kills


@pytest.mark.kafka
def test_two_instances_count_exactly_and_a_wiped_table_dir_is_rebuilt_from_the_changelog(
        kafka_bootstrap, new_topic, tmp_path):
    source = new_topic(4)
    words = [f"w{i % 50}" for i in range(4000)]
    kafkatools.produce(kafka_bootstrap, source, [(w.encode(), b"x") for w in words])
    group = app_id = kafkatools.unique_name("tables")
    table_dir = tmp_path / "tables"
    settings = {"app": "counting:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2, "table_dir": str(table_dir)}
    agents = {"count": {"instances": 2}}
    env = {"IN_TOPIC": source, "APP_ID": app_id}
    with Agentd(tmp_path, settings, agents=agents, modules={"counting": COUNTING_APP},
                env=env) as daemon:
        run_until_committed(daemon, kafka_bootstrap, group, source)
        assert daemon.stop() == 0
    assert changelog_counts(kafka_bootstrap, app_id) == Counter(words)
    assert any((table_dir / app_id / "word_counts").iterdir()), "no shard on disk"

    # Wipe the shards and count 400 more: each shard is rebuilt from the changelog first.
    shutil.rmtree(table_dir)
    more = [f"w{i % 50}" for i in range(400)]
    kafkatools.produce(kafka_bootstrap, source, [(w.encode(), b"x") for w in more])
    with Agentd(tmp_path, settings, agents=agents, modules={"counting": COUNTING_APP},
                env=env) as daemon:
        run_until_committed(daemon, kafka_bootstrap, group, source)
        assert daemon.stop() == 0
        assert "recovered" in daemon.log()
    assert changelog_counts(kafka_bootstrap, app_id) == Counter(words + more)


@pytest.mark.kafka
def test_instance_kills_do_not_count_a_redelivered_record_twice(
        kafka_bootstrap, new_topic, tmp_path):
    source = new_topic(4)
    words = [f"w{i % 20}" for i in range(3000)]
    kafkatools.produce(kafka_bootstrap, source, [(w.encode(), b"x") for w in words])
    group = app_id = kafkatools.unique_name("tables-kill")
    settings = {"app": "counting:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2,
                "table_dir": str(tmp_path / "tables")}
    with Agentd(tmp_path, settings, agents={"count": {"instances": 2}},
                modules={"counting": COUNTING_APP},
                env={"IN_TOPIC": source, "DELAY": "0.001", "APP_ID": app_id}) as daemon:
        kills = run_until_committed(daemon, kafka_bootstrap, group, source, kill_every=1.0)
        assert daemon.stop() == 0
        log = daemon.log()
    assert kills >= 2
    assert "re-dispatching" in log
    assert changelog_counts(kafka_bootstrap, app_id) == Counter(words)


def test_a_table_under_key_ordering_is_refused_at_start(tmp_path):
    """One line naming the agent and the table, exit 2, before any Kafka is needed."""
    settings = {"app": "counting:app", "table_dir": str(tmp_path / "tables")}
    with Agentd(tmp_path, settings, agents={"count": {"ordering": "key"}},
                modules={"counting": COUNTING_APP}, env={"IN_TOPIC": "words"}) as daemon:
        assert daemon.proc is not None
        code = daemon.proc.wait(60)
        log = daemon.log()
    assert code == 2
    assert "count" in log and "word_counts" in log and 'ordering = "partition"' in log
    assert "Traceback" not in log
