"""processing_guarantee = "exactly_once" on real Kafka: outputs and offsets in one
transaction per instance, so a read_committed reader sees every input once however
often instances are killed; and the configurations it cannot serve are refused."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

import kafkatools
import pytest
from agentdproc import Agentd
from agentsrc import agent_module
from test_daemon_pipeline import keyed_items

N = 30_000

SLOW_RELAY = agent_module("eos-relay-app", "relay", """
    time.sleep(0.0002)  # enough work that kills land mid-transaction
    yield value
""", imports=["time"])


def run_with_kills(bootstrap: str, tmp_path, source: str, sink: str, group: str,
                   guarantee: str) -> int:
    settings = {"app": "relay:app", "broker": f"kafka://{bootstrap}", "group_id": group,
                "commit_interval": 0.2, "processing_guarantee": guarantee}
    kills = 0
    with Agentd(tmp_path, settings, agents={"relay": {"instances": 2}},
                modules={"relay": SLOW_RELAY},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        deadline = time.monotonic() + 240
        while not kafkatools.committed_equals_end(bootstrap, group, source):
            assert time.monotonic() < deadline, "the run did not finish"
            daemon.assert_running()
            pids = daemon.instance_pids()
            if pids and kills < 12:
                os.kill(random.choice(pids), signal.SIGKILL)
                kills += 1
            time.sleep(0.7)
        assert daemon.stop() == 0
        assert "re-dispatching" in daemon.log()
    return kills


@pytest.mark.kafka
def test_a_read_committed_reader_sees_every_input_once_through_instance_kills(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(4), new_topic(2)
    items = keyed_items(N, 500)
    kafkatools.produce(kafka_bootstrap, source, items)
    group = kafkatools.unique_name("eos")
    kills = run_with_kills(kafka_bootstrap, tmp_path, source, sink, group, "exactly_once")
    counts = Counter(kafkatools.read_committed_values(kafka_bootstrap, sink))
    lost = {value for _, value in items} - set(counts)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\nexactly_once: {kills} instance kills, {N} inputs: lost {len(lost)}, "
          f"duplicates {duplicates} for a read_committed reader")
    assert kills >= 2
    assert not lost and duplicates == 0


def test_exactly_once_refuses_an_agent_under_key_ordering(tmp_path):
    settings = {"app": "relay:app", "processing_guarantee": "exactly_once"}
    with Agentd(tmp_path, settings, agents={"relay": {"ordering": "key"}},
                modules={"relay": SLOW_RELAY},
                env={"IN_TOPIC": "in", "SINK_TOPIC": "out"}) as daemon:
        assert daemon.proc is not None
        code = daemon.proc.wait(60)
        log = daemon.log()
    assert code == 2 and "Traceback" not in log
    assert "relay" in log and 'needs ordering = "partition"' in log


def test_the_apps_processing_guarantee_is_honoured_when_the_config_is_silent(tmp_path):
    app = SLOW_RELAY.replace('faust.App("eos-relay-app")',
                             'faust.App("eos-relay-app", processing_guarantee="exactly_once")')
    with Agentd(tmp_path, {"app": "relay:app"}, agents={"relay": {"ordering": "none"}},
                modules={"relay": app}, env={"IN_TOPIC": "in", "SINK_TOPIC": "out"}) as daemon:
        assert daemon.proc is not None
        code = daemon.proc.wait(60)
    assert code == 2 and 'needs ordering = "partition"' in daemon.log()
