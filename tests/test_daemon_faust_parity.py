"""Faust-style agent declarations under a real daemon and broker: an agent on a topic
*name* with ``key_type``/``value_type`` (Faust's ``Agent._prepare_channel``), whose
Record coerces its fields, sees typed keys and models; ``event.message.timestamp`` is
the Kafka timestamp in seconds."""

from __future__ import annotations

import json

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed

TYPED_AGENT = '''
import os

import agentlib as faust

app = faust.App("typed-app")


class Point(faust.Record, coerce=True, namespace="tests.daemon.Point"):
    x: int
    y: int


@app.agent(os.environ["IN_TOPIC"], key_type=str, value_type=Point,
           sink=[app.topic(os.environ["SINK_TOPIC"])])
async def typed(stream):
    async for event in stream.events():
        point = event.value
        yield {"key": event.key, "sum": point.x + point.y,
               "model": type(point).__name__,
               "seconds": event.message.timestamp == event.message.timestamp_ms / 1000}
'''


@pytest.mark.kafka
def test_agent_on_a_topic_name_with_key_and_value_types(kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(2), new_topic(1)
    items = [(f"k{i}".encode(), json.dumps({"x": str(i), "y": i}).encode())
             for i in range(20)]
    kafkatools.produce(kafka_bootstrap, source, items)
    group = kafkatools.unique_name("typed")
    settings = {"app": "typed_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.5}
    with Agentd(tmp_path, settings, agents={"typed": {"instances": 1}},
                modules={"typed_agent": TYPED_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        wait_committed(daemon, kafka_bootstrap, group, source,
                       120, "committed offsets to reach the end offsets", interval=1.0)
        assert daemon.stop() == 0, daemon.log()[-3000:]
    values = [json.loads(r.value) for r in kafkatools.read_to_end(kafka_bootstrap, sink)
              if r.value is not None]
    assert sorted(values, key=lambda v: v["sum"]) == [
        {"key": f"k{i}", "sum": 2 * i, "model": "Point", "seconds": True} for i in range(20)]
