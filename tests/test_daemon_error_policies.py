"""on_error policies applied to agent exceptions, and oversized records, end to end."""

from __future__ import annotations

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed
from agentsrc import agent_module

PICKY_AGENT = """
import os
import agentlib as faust

app = faust.App("picky-app")
source = app.topic(os.environ["IN_TOPIC"], value_type=bytes, value_serializer="raw")
sink = app.topic(os.environ["SINK_TOPIC"], value_type=bytes, value_serializer="raw")
attempts = {}


@app.agent(source, sink=[sink])
async def picky(stream):
    async for value in stream:
        if value.startswith(b"bad"):
            raise ValueError(f"refused {value!r}")
        if value.startswith(b"flaky"):
            attempts[value] = attempts.get(value, 0) + 1
            if attempts[value] < 2:
                raise RuntimeError(f"try {value!r} again")
        yield value
"""

GOOD = [(None, f"good{i}".encode()) for i in range(100)]
MORE = [(None, f"good{i}".encode()) for i in range(100, 200)]


def run_picky(bootstrap, source, sink, tmp_path, agent_settings, items):
    kafkatools.produce(bootstrap, source, items)
    group = kafkatools.unique_name("picky")
    settings = {"app": "picky_agent:app", "broker": f"kafka://{bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    daemon = Agentd(tmp_path, settings, agents={"picky": agent_settings},
                    modules={"picky_agent": PICKY_AGENT},
                    env={"IN_TOPIC": source, "SINK_TOPIC": sink})
    return daemon, group


def sink_values(bootstrap, topic):
    return sorted(r.value for r in kafkatools.read_to_end(bootstrap, topic))


@pytest.mark.kafka
@pytest.mark.parametrize("policy", ["log", "dead_letter", "retry"])
def test_a_failing_event_is_handled_by_its_policy_and_the_rest_flows(
        kafka_bootstrap, new_topic, tmp_path, policy):
    source, sink = new_topic(2), new_topic(1)
    items = [*GOOD, (None, b"bad-1"), (None, b"flaky-1"), *MORE]
    agent = {"on_error": policy, "max_retries": 3, "retry_backoff": 0.1}
    daemon, group = run_picky(kafka_bootstrap, source, sink, tmp_path, agent, items)
    with daemon:
        daemon.wait_consuming()
        wait_committed(daemon, kafka_bootstrap, group, source, 60, "everything to be committed")
        assert daemon.stop() == 0
    expected = sorted(v for _, v in [*GOOD, *MORE])
    if policy == "retry":
        expected = sorted([*expected, b"flaky-1"])  # passed on its second attempt
    assert sink_values(kafka_bootstrap, sink) == expected
    assert "refused b'bad-1'" in daemon.log()
    dead = kafkatools.read_to_end(kafka_bootstrap, f"{source}.dlq") \
        if policy == "dead_letter" else []
    if policy == "dead_letter":
        assert sorted(r.value for r in dead) == [b"bad-1", b"flaky-1"]
        headers = dict(dead[0].headers)
        assert headers["agentd-agent"] == b"picky_agent.picky"
        assert b"ValueError" in headers["agentd-error"] or b"RuntimeError" in \
            headers["agentd-error"]


@pytest.mark.kafka
def test_the_crash_policy_stops_agentd_non_zero_without_committing_past_the_failure(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(1), new_topic(1)
    items = [*GOOD, (None, b"bad-1"), *MORE]
    daemon, group = run_picky(kafka_bootstrap, source, sink, tmp_path,
                              {"on_error": "crash"}, items)
    with daemon:
        assert daemon.proc is not None
        assert daemon.proc.wait(60) == 1
    assert "on_error=crash" in daemon.log()
    committed = kafkatools.committed_offsets(kafka_bootstrap, group, source)
    assert committed.get(0, 0) <= len(GOOD), "committed past the failed event"
    assert b"bad-1" not in sink_values(kafka_bootstrap, sink)


OVERSIZED_AGENT = agent_module("oversized-app", "relay", keyed=False)


@pytest.mark.kafka
def test_a_record_larger_than_the_ring_is_dead_lettered_not_a_crash_loop(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(1), new_topic(1)
    huge = b"x" * 100_000
    kafkatools.produce(kafka_bootstrap, source, [*GOOD, (b"big", huge), *MORE])
    group = kafkatools.unique_name("oversized")
    settings = {"app": "oversized_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    agents = {"relay": {"on_error": "dead_letter", "ring_size": "64KiB"}}
    with Agentd(tmp_path, settings, agents=agents, modules={"oversized_agent": OVERSIZED_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        wait_committed(daemon, kafka_bootstrap, group, source, 60, "everything to be committed")
        assert daemon.stop() == 0
    dead = kafkatools.read_to_end(kafka_bootstrap, f"{source}.dlq")
    assert [(r.key, r.value) for r in dead] == [(b"big", huge)]
    assert b"exceeds the ring" in dict(dead[0].headers)["agentd-error"]
    assert sink_values(kafka_bootstrap, sink) == sorted(v for _, v in [*GOOD, *MORE])


RECORD_AGENT = """
import os
import agentlib as faust

app = faust.App("typed-app")


class Point(faust.Record):
    x: int
    y: int


source = app.topic(os.environ["IN_TOPIC"], value_type=Point)
sink = app.topic(os.environ["SINK_TOPIC"], value_type=bytes, value_serializer="raw")


@app.agent(source, sink=[sink])
async def typed(stream):
    async for point in stream:
        yield f"{point.x},{point.y}".encode()
"""


@pytest.mark.kafka
def test_an_undecodable_value_goes_to_the_dead_letter_topic_and_the_rest_flows(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(1), new_topic(1)
    points = [(None, f'{{"x": {i}, "y": {i + 1}}}'.encode()) for i in range(50)]
    kafkatools.produce(kafka_bootstrap, source, [*points[:25], (None, b"{not json"),
                                                 *points[25:]])
    group = kafkatools.unique_name("typed")
    settings = {"app": "typed_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    with Agentd(tmp_path, settings, agents={"typed": {"on_error": "dead_letter"}},
                modules={"typed_agent": RECORD_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        wait_committed(daemon, kafka_bootstrap, group, source, 60, "everything to be committed")
        assert daemon.stop() == 0
    dead = kafkatools.read_to_end(kafka_bootstrap, f"{source}.dlq")
    assert [r.value for r in dead] == [b"{not json"]
    assert dict(dead[0].headers)["agentd-original-offset"] == b"25"
    assert sink_values(kafka_bootstrap, sink) == sorted(
        f"{i},{i + 1}".encode() for i in range(50))
