"""Two agents reading one topic: each gets every message, and an offset is committed
only when both have finished it (one offset-tracker lane per agent)."""

from __future__ import annotations

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed, wait_until

TWO_READERS = """
import asyncio
import os
import agentlib as faust

app = faust.App("fanout-app")
source = app.topic(os.environ["IN_TOPIC"], value_type=bytes, value_serializer="raw")
fast_sink = app.topic(os.environ["FAST_SINK"], value_type=bytes, value_serializer="raw")
slow_sink = app.topic(os.environ["SLOW_SINK"], value_type=bytes, value_serializer="raw")


@app.agent(source, sink=[fast_sink])
async def fast(stream):
    async for value in stream:
        yield value


@app.agent(source, sink=[slow_sink])
async def slow(stream):
    async for value in stream:
        await asyncio.sleep(0.002)
        yield value
"""


@pytest.mark.kafka
def test_two_agents_on_one_topic_each_get_every_message_and_commit_waits_for_both(
        kafka_bootstrap, new_topic, tmp_path):
    source, fast_sink, slow_sink = new_topic(4), new_topic(1), new_topic(1)
    items = [(f"k{i % 50}".encode(), f"v{i}".encode()) for i in range(2_000)]
    kafkatools.produce(kafka_bootstrap, source, items)
    group = kafkatools.unique_name("fanout")
    settings = {"app": "two_readers:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    with Agentd(tmp_path, settings, agents={"fast": {"instances": 2}, "slow": {"instances": 1}},
                modules={"two_readers": TWO_READERS},
                env={"IN_TOPIC": source, "FAST_SINK": fast_sink,
                     "SLOW_SINK": slow_sink}) as daemon:
        daemon.wait_consuming()
        wait_until(lambda: daemon.assert_running() or
                   len(kafkatools.read_to_end(kafka_bootstrap, fast_sink)) == len(items),
                   60, "the fast agent to finish")
        # Whatever is committed, the slow agent has finished at least that much (read
        # the commit first: the slow agent only moves on meanwhile).
        committed = sum(kafkatools.committed_offsets(kafka_bootstrap, group, source).values())
        slow_done = len(kafkatools.read_to_end(kafka_bootstrap, slow_sink))
        assert committed <= slow_done
        wait_committed(daemon, kafka_bootstrap, group, source,
                       60, "both agents to finish and the group to commit everything")
        assert daemon.stop() == 0
    expected = sorted(value for _, value in items)
    for sink in (fast_sink, slow_sink):
        assert sorted(r.value for r in kafkatools.read_to_end(kafka_bootstrap, sink)) == expected
