"""A daemon whose consumer is fenced (a fatal error) builds a new one and goes on.

librdkafka raises ``FENCED_INSTANCE_ID`` as a fatal consumer error when another join
takes the daemon's static ``group.instance.id``; that consumer never fetches again. Seen
after a broker restart (fault row 24 stalled on it). Here a second client joins the group
with the daemon's instance id, which fences the daemon's consumer for real; the daemon
must rejoin, take its partitions back and process and commit everything (before
membership.py it logged the error once and stalled).
"""

from __future__ import annotations

import time

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed, wait_until
from confluent_kafka import Consumer

FORWARD_AGENT = """
import os
import agentlib as faust

app = faust.App("fenced-app")
source = app.topic(os.environ["IN_TOPIC"], value_type=bytes, value_serializer="raw")
sink = app.topic(os.environ["OUT_TOPIC"], value_type=bytes, value_serializer="raw")


@app.agent(source, sink=[sink])
async def forward(stream):
    async for value in stream:
        yield value
"""
INSTANCE_ID = "agentd-fenced-test"


def fence(bootstrap: str, group: str, topic: str) -> None:
    """Join ``group`` as the daemon's static member, until given partitions, and leave
    (a static member's close does not leave the group: the daemon's rejoin replaces it)."""
    intruder = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "group.instance.id": INSTANCE_ID, "session.timeout.ms": 6000,
                         "partition.assignment.strategy": "cooperative-sticky",
                         "enable.auto.commit": False, "auto.offset.reset": "latest"})
    try:
        intruder.subscribe([topic])
        deadline = time.monotonic() + 30
        while not intruder.assignment():
            assert time.monotonic() < deadline, "the intruder was never given partitions"
            intruder.poll(0.2)
    finally:
        intruder.close()


@pytest.mark.kafka
def test_a_fenced_consumer_is_replaced_and_nothing_is_lost(kafka_bootstrap, new_topic,
                                                           tmp_path):
    source, sink = new_topic(4), new_topic(4)
    group = kafkatools.unique_name("fenced")
    settings = {"app": "forward_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": "1s", "log_level": "INFO"}
    with Agentd(tmp_path, settings, modules={"forward_agent": FORWARD_AGENT},
                kafka={"group.instance.id": INSTANCE_ID},
                env={"IN_TOPIC": source, "OUT_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        kafkatools.produce(kafka_bootstrap, source, [(None, b"a%d" % i) for i in range(500)])
        wait_committed(daemon, kafka_bootstrap, group, source, 60, "the first 500")

        fence(kafka_bootstrap, group, source)
        wait_until(lambda: "consumer fenced by other consumer" in daemon.log(), 30,
                   "the daemon to be fenced")
        kafkatools.produce(kafka_bootstrap, source, [(None, b"b%d" % i) for i in range(500)])
        wait_committed(daemon, kafka_bootstrap, group, source, 90,
                       "the records after the fence to be processed and committed")
        assert daemon.stop() == 0
    log = daemon.log()
    assert "a new consumer rejoins group" in log
    assert "Traceback" not in log
    assert "lost partitions are back: fed on from where this daemon was" in log
    values = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, sink)]
    expected = {b"a%d" % i for i in range(500)} | {b"b%d" % i for i in range(500)}
    assert expected <= set(values), f"{len(expected - set(values))} of 1000 records lost"
    assert len(values) == 1000, f"{len(values) - 1000} replayed: the partitions came back"
