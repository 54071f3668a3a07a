"""Tables under agentd on real Kafka: counts exact with two instances writing their own
partitions, through instance kills (the shard's marks skip redelivered records), and
after a restart that rebuilds the shards from the changelog; status and metrics show
each table partition's copy."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter

import kafkatools
import pytest
from agentdproc import AGENTD, Agentd, wait_until
from tablekit import COUNTING_APP, changelog_counts
from test_metrics import free_port, scrape


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


def status(daemon: Agentd, *args: str) -> str:
    done = subprocess.run([*AGENTD, "-c", str(daemon.config), "status", *args],
                          cwd=daemon.workdir, env=daemon.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.kafka
def test_status_and_metrics_show_each_table_partition_active_and_caught_up(
        kafka_bootstrap, new_topic, tmp_path):
    source = new_topic(4)
    words = [f"w{i % 40}" for i in range(400)]
    kafkatools.produce(kafka_bootstrap, source, [(w.encode(), b"x") for w in words])
    group = app_id = kafkatools.unique_name("tables-status")
    table_dir = tmp_path / "tables"
    port = free_port()
    settings = {"app": "counting:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2, "table_dir": str(table_dir)}
    daemon = Agentd(tmp_path, settings, agents={"count": {"instances": 2}},
                    modules={"counting": COUNTING_APP},
                    env={"IN_TOPIC": source, "APP_ID": app_id})
    daemon.config.write_text(daemon.config.read_text() + f"[metrics]\nport = {port}\n")

    def caught_up():
        """Every partition's shard reported with its writes' changelog offsets (a
        report may be up to a second older than the commit)."""
        rows = json.loads(status(daemon, "--json"))["tables"]
        done = len(rows) == 4 and all(r["state"] == "active" and r["changelog_lag"] == 0
                                      and r["keys"] > 0 and r["changelog_offset"] >= 0
                                      for r in rows)
        return rows if done else None

    with daemon:
        run_until_committed(daemon, kafka_bootstrap, group, source)
        rows = wait_until(caught_up, 30, "status to show 4 active table partitions")
        assert sorted((r["table"], r["partition"]) for r in rows) == \
            [("word_counts", p) for p in range(4)]
        assert sorted(r["instance"] for r in rows) == [0, 0, 1, 1]
        assert all(r["bytes"] > 0 for r in rows), rows
        # The shards hold their whole changelog: a row per key written per flush window
        # (docs/tables.md), so at least one per word and never more than one per write.
        held = sum(r["changelog_offset"] + 1 for r in rows)
        assert held == sum(kafkatools.end_offsets(
            kafka_bootstrap, f"{app_id}-word_counts-changelog").values())
        assert len(set(words)) <= held <= len(words)
        text = status(daemon)
        assert "TABLE" in text and "CHANGELOG OFFSET" in text
        assert all(f"word_counts[{p}]" in text for p in range(4))
        assert daemon.stop() == 0

    # An empty table_dir: the shards are rebuilt from the changelog, and counted.
    shutil.rmtree(table_dir)
    changelog_rows = sum(kafkatools.end_offsets(
        kafka_bootstrap, f"{app_id}-word_counts-changelog").values())
    with daemon:
        kafkatools.produce(kafka_bootstrap, source, [(f"w{p}".encode(), b"x")
                                                     for p in range(40)])

        def recovered():
            daemon.assert_running()
            try:
                samples = scrape(port)
            except OSError:  # the second daemon is not serving metrics yet
                return None
            got = sum(v for _, v in samples.get("agentd_table_recovered_rows_total", []))
            return samples if got == changelog_rows else None

        samples = wait_until(recovered, 30, "metrics to count the replayed changelog rows")
        keys = samples["agentd_table_keys"]
        assert len(keys) == 4 and all(labels["state"] == "active" and labels["table"] ==
                                      "word_counts" and value > 0 for labels, value in keys)
        assert len(samples["agentd_table_bytes"]) == 4
        assert [value for _, value in samples["agentd_table_changelog_lag"]] == [0] * 4
        assert daemon.stop() == 0


@pytest.mark.kafka
def test_an_instance_whose_shard_cannot_open_stops_and_is_restarted(
        kafka_bootstrap, new_topic, tmp_path):
    """Not stalled with records it cannot count: it exits (status 4), naming the table,
    and the daemon restarts it with backoff; nothing is committed past the records."""
    source = new_topic(2)
    kafkatools.produce(kafka_bootstrap, source, [(b"w1", b"x"), (b"w2", b"x")])
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    group = app_id = kafkatools.unique_name("tables-broken-dir")
    settings = {"app": "counting:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2,
                "table_dir": str(blocker / "tables")}
    with Agentd(tmp_path, settings, modules={"counting": COUNTING_APP},
                env={"IN_TOPIC": source, "APP_ID": app_id}) as daemon:
        wait_until(lambda: daemon.assert_running() or "exit status 4" in daemon.log(), 60,
                   "the instance to stop on its table")
        wait_until(lambda: daemon.log().count("started, pid") >= 2, 30, "a restart")
        daemon.assert_running()
        log = daemon.log()
        committed = kafkatools.committed_offsets(kafka_bootstrap, group, source)
        assert all(offset == 0 for offset in committed.values()), committed
        assert daemon.stop() == 0
    assert "word_counts[" in log and "cannot open" in log
