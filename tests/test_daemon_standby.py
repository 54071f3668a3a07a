"""Standby replicas on real Kafka: two daemons in one group, each keeping standby shards
of the table partitions the other owns; kill -9 one, and the other takes its
partitions from its standby copy, replaying only the changelog's tail (timed)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, drain_and_stop, wait_until
from test_daemon_tables import COUNTING_APP, changelog_counts, status

PARTITIONS = 4


def member(workdir: Path, bootstrap: str, source: str, app_id: str,
           replicas: int = 1) -> Agentd:
    workdir.mkdir()
    settings = {"app": "counting:app", "broker": f"kafka://{bootstrap}", "group_id": app_id,
                "commit_interval": 0.2, "table_dir": str(workdir / "tables"),
                "table_standby_replicas": replicas}
    return Agentd(workdir, settings, agents={"count": {"instances": 2}},
                  modules={"counting": COUNTING_APP},
                  kafka={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                  env={"IN_TOPIC": source, "APP_ID": app_id})


def owned(daemon: Agentd) -> int:
    log = daemon.log()
    return (sum(int(n) for n in re.findall(r"assigned (\d+) partitions", log))
            - sum(int(n) for n in re.findall(r"revoked (\d+) partitions", log)))


def standby_rows(daemon: Agentd) -> list[dict]:
    """The standby rows of ``agentd status --json`` (the keeper's copies)."""
    rows = json.loads(status(daemon, "--json"))["tables"]
    return [r for r in rows if r["state"] == "standby"]


def replayed_rows(log: str) -> int:
    return sum(int(a) for a in re.findall(r"recovered (\d+) rows", log))


@pytest.mark.kafka
def test_a_survivor_takes_over_from_its_standby_copy_and_counts_exactly(
        kafka_bootstrap, new_topic, tmp_path):
    source = new_topic(PARTITIONS)
    app_id = kafkatools.unique_name("standby")
    first = [f"w{i % 100}" for i in range(4000)]
    with member(tmp_path / "a", kafka_bootstrap, source, app_id) as a:
        a.wait_consuming()
        with member(tmp_path / "b", kafka_bootstrap, source, app_id) as b:
            wait_until(lambda: b.assert_running() or (owned(b) > 0 and owned(a) > 0), 60,
                       "both daemons to own partitions")
            kafkatools.produce(kafka_bootstrap, source, [(w.encode(), b"x") for w in first])
            wait_until(lambda: kafkatools.committed_equals_end(kafka_bootstrap, app_id,
                                                               source), 90, "the first batch")
            theirs = owned(b)
            wait_until(lambda: len(standby_rows(a)) == theirs and all(
                r["changelog_lag"] == 0 for r in standby_rows(a)), 30,
                "a's standby copies of b's partitions to be current")
            standby_keys = sum(r["keys"] for r in standby_rows(a))
            before_kill = len(a.log())
            b.kill()
            killed = time.monotonic()
        second = [f"w{i % 100}" for i in range(400)]
        kafkatools.produce(kafka_bootstrap, source, [(w.encode(), b"x") for w in second])
        wait_until(lambda: a.assert_running() or owned(a) == PARTITIONS, 60,
                   "a to own every partition")
        wait_until(lambda: kafkatools.committed_equals_end(kafka_bootstrap, app_id, source),
                   60, "a to count the second batch")
        took = time.monotonic() - killed
        takeover_log = a.log()[before_kill:]
        drain_and_stop(a, kafka_bootstrap, app_id, source)
    assert changelog_counts(kafka_bootstrap, app_id) == Counter(first + second)
    replayed = replayed_rows(takeover_log)
    # b's partitions held about theirs/PARTITIONS of the 4000 writes: the copy had them.
    assert replayed < 0.1 * len(first) * theirs / PARTITIONS, takeover_log[-3000:]
    print(f"\nstandby takeover: b owned {theirs} of {PARTITIONS} partitions, a's standby "
          f"held ~{standby_keys} keys; a replayed {replayed} changelog rows and had counted "
          f"the next batch {took:.1f} s after the kill (session timeout 6 s)")
