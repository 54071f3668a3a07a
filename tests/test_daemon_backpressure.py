"""Backpressure: a stuck agent pauses only the partitions that feed it.

The ``stuck`` agent's async sink blocks for 30 s on its first value, and then until
the test releases it (an async sink holds the agent, as in Faust), so its instance
stops taking records, its ring fills and the supervisor must pause exactly its topic's
partitions. Meanwhile ``steady``, on another topic, must process everything it is
sent; afterwards ``stuck`` catches up.
"""

from __future__ import annotations

import re
from collections import Counter

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed, wait_until

TWO_AGENTS = """
import asyncio
import os
import agentlib as faust

app = faust.App("backpressure-app")
stuck_topic = app.topic(os.environ["STUCK_TOPIC"], value_type=bytes, value_serializer="raw")
steady_topic = app.topic(os.environ["STEADY_TOPIC"], value_type=bytes,
                         value_serializer="raw")
stuck_sink = app.topic(os.environ["STUCK_SINK"], value_type=bytes, value_serializer="raw")
steady_sink = app.topic(os.environ["STEADY_SINK"], value_type=bytes, value_serializer="raw")
blocked = []


async def slow_sink(value):
    # Blocks 30 s, and then until the test says so (no race with a slow machine).
    if not blocked:
        blocked.append(value)
        await asyncio.sleep(30)
        while not os.path.exists(os.environ["RELEASE_FILE"]):
            await asyncio.sleep(0.1)


@app.agent(stuck_topic, sink=[stuck_sink, slow_sink])
async def stuck(stream):
    async for value in stream:
        yield value


@app.agent(steady_topic, sink=[steady_sink])
async def steady(stream):
    async for value in stream:
        yield value
"""


@pytest.mark.kafka
def test_a_blocked_sink_pauses_only_its_partitions_while_another_agent_keeps_going(
        kafka_bootstrap, new_topic, tmp_path):
    stuck_topic, steady_topic = new_topic(4), new_topic(4)
    stuck_sink, steady_sink = new_topic(1), new_topic(1)
    group = kafkatools.unique_name("backpressure")
    settings = {"app": "two_agents:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2, "log_level": "DEBUG"}
    # The 30 s block must not look like a hung worker (heartbeat_timeout defaults to 30 s).
    agents = {"stuck": {"instances": 1, "ring_size": "64KiB", "heartbeat_timeout": "300s"},
              "steady": {"instances": 1}}
    env = {"STUCK_TOPIC": stuck_topic, "STEADY_TOPIC": steady_topic,
           "STUCK_SINK": stuck_sink, "STEADY_SINK": steady_sink,
           "RELEASE_FILE": str(tmp_path / "release")}
    stuck_inputs = [(None, f"s{i}".encode() * 20) for i in range(20_000)]
    steady_inputs = [(None, f"t{i}".encode()) for i in range(2_000)]
    with Agentd(tmp_path, settings, agents=agents, modules={"two_agents": TWO_AGENTS},
                env=env) as daemon:
        daemon.wait_consuming()
        kafkatools.produce(kafka_bootstrap, stuck_topic, stuck_inputs)
        wait_until(lambda: daemon.assert_running() or "blocked: paused" in daemon.log(),
                   20, "the stuck agent's partitions to be paused")
        kafkatools.produce(kafka_bootstrap, steady_topic, steady_inputs)
        wait_committed(daemon, kafka_bootstrap, group, steady_topic,
                       20, "the steady agent to finish while the other is stuck")
        # The sink is still blocked (until released below): nothing caught up there.
        assert not kafkatools.committed_equals_end(kafka_bootstrap, group, stuck_topic)
        assert len(kafkatools.read_to_end(kafka_bootstrap, stuck_sink)) < len(stuck_inputs)
        paused = re.findall(r"blocked: paused (.*)", daemon.log())
        assert paused and all(stuck_topic in line and steady_topic not in line
                              for line in paused)
        (tmp_path / "release").touch()
        wait_committed(daemon, kafka_bootstrap, group, stuck_topic,
                       120, "the stuck agent to catch up after its sink unblocked")
        assert daemon.stop() == 0
    for sink, inputs in ((steady_sink, steady_inputs), (stuck_sink, stuck_inputs)):
        got = Counter(r.value for r in kafkatools.read_to_end(kafka_bootstrap, sink))
        expected = Counter(value for _, value in inputs)
        missing, extra = expected - got, got - expected
        assert not missing and not extra, \
            f"{sink}: {sum(missing.values())} missing, {sum(extra.values())} duplicated"
