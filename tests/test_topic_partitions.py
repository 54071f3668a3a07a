"""``partitions=`` is honoured: agentd creates the topics an app declares with the count
it declares (``app.topic(..., partitions=)``, ``group_by(..., partitions=)``, the app's
``topic_partitions``), and a topic that exists in Kafka with another count is one line
at ``agentd check`` and ``agentd start`` (exit 2)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import kafkatools
import pytest
from agentdproc import AGENTD, REPO, Agentd, write_config
from confluent_kafka.admin import AdminClient

import agentlib

DECLARING_APP = """
import os
import agentlib as faust

app = faust.App(os.environ["APP_ID"])
source = app.topic(os.environ["IN_TOPIC"], partitions=3)
sink = app.topic(os.environ["SINK_TOPIC"], value_type=bytes, value_serializer="raw",
                 partitions=2)


@app.agent(source, sink=[sink])
async def regroup(stream):
    async for value in stream.group_by(lambda v: v, name="same", partitions=5):
        yield b"x"
"""


def partition_counts(bootstrap: str, *names: str) -> dict[str, int | None]:
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return {name: len(topics[name].partitions) if name in topics else None
            for name in names}


def test_an_agent_declares_the_partition_counts_of_its_topics() -> None:
    app = agentlib.App("parts", topic_partitions=6)
    sink = app.topic("out", partitions=2)

    @app.agent(app.topic("in", partitions=3), name="parts.a", sink=[sink, app.topic("s")])
    async def grouped(stream: Any) -> Any:
        async for value in stream.group_by(lambda v: v, name="k"):
            yield value  # sinks need an agent that yields (Faust's rule)

    @app.agent(app.topic("in2"), name="parts.b")
    async def sized(stream: Any) -> None:
        async for _ in stream.group_by(lambda v: v, name="k", partitions=2):
            pass

    assert grouped.topic_partitions() == {"in": 3, "parts.a-in-k-repartition": 6, "out": 2}
    assert sized.topic_partitions() == {"in2": 6, "parts.b-in2-k-repartition": 2}
    assert agentlib.App("none").agent(name="n")(_reader).topic_partitions() == {}


async def _reader(stream: Any) -> None:
    async for _ in stream:
        pass


@pytest.mark.kafka
def test_start_creates_topics_with_the_declared_partition_counts(kafka_bootstrap, tmp_path):
    source, sink = kafkatools.unique_name("declared-in"), kafkatools.unique_name("declared-out")
    repartition = f"declaring_app.regroup-{source}-same-repartition"
    settings = {"app": "declaring_app:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("declared")}
    with Agentd(tmp_path, settings, modules={"declaring_app": DECLARING_APP},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink,
                     "APP_ID": kafkatools.unique_name("declared")}) as daemon:
        daemon.wait_consuming()
        counts = partition_counts(kafka_bootstrap, source, repartition, sink)
        assert daemon.stop() == 0
    assert counts == {source: 3, repartition: 5, sink: 2}, daemon.log()


@pytest.mark.kafka
def test_a_topic_with_another_partition_count_is_one_line_at_check_and_start(
        kafka_bootstrap, tmp_path):
    source = kafkatools.create_topic(kafka_bootstrap, kafkatools.unique_name("declared-in"), 4)
    (tmp_path / "declaring_app.py").write_text(DECLARING_APP)
    config = write_config(tmp_path / "agentd.toml",
                          {"app": "declaring_app:app", "broker": f"kafka://{kafka_bootstrap}",
                           "state_dir": str(tmp_path / "state")}, None)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
           "IN_TOPIC": source, "SINK_TOPIC": kafkatools.unique_name("declared-out"),
           "APP_ID": kafkatools.unique_name("declared")}
    expected = (f"topic {source!r} has 4 partitions in Kafka but the app declares 3 "
                f"(partitions=): declare 4, or delete and recreate the topic")
    for command in ("check", "start"):
        done = subprocess.run([*AGENTD, command, str(config)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (command, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1] == f"agentd {command}: {expected}"
    assert partition_counts(kafka_bootstrap, source) == {source: 4}
