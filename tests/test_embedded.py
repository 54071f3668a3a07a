"""The embedded broker (librdkafka mock cluster) serves other processes over loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import kafkatools
import pytest

from supervisor.devbrokers.embedded import AUTO_CREATE_PARTITIONS, EmbeddedBroker

AGENTD = [sys.executable, str(Path(__file__).resolve().parent.parent / "bin" / "agentd")]
TESTS_DIR = str(Path(__file__).resolve().parent)

PRODUCER = """
import sys
sys.path.insert(0, {tests!r})
import kafkatools
print(kafkatools.produce({bootstrap!r}, {topic!r}, ((str(i), str(i)) for i in range(1000))))
"""

GROUP_CONSUMER = """
from confluent_kafka import Consumer
consumer = Consumer({{"bootstrap.servers": {bootstrap!r}, "group.id": {group!r},
                     "auto.offset.reset": "earliest", "enable.auto.commit": False}})
consumer.subscribe([{topic!r}])
seen = set()
while len(seen) < 1000:
    for msg in consumer.consume(500, 10.0):
        assert msg.error() is None, msg.error()
        seen.add(int(msg.value()))
consumer.commit(asynchronous=False)
consumer.close()
print(sorted(seen) == list(range(1000)))
"""


def run_client(template: str, **values: str) -> str:
    """Run a client in its own interpreter: the broker process never touches the data."""
    code = textwrap.dedent(template).format(tests=TESTS_DIR, **values)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_embedded_command_round_trips_1000_messages_between_two_other_processes() -> None:
    proc, bootstrap = kafkatools.spawn_dev_broker("--embedded", "--topic", "orders:8")
    try:
        group = kafkatools.unique_name("g")
        assert run_client(PRODUCER, bootstrap=bootstrap, topic="orders") == "1000"
        assert run_client(GROUP_CONSUMER, bootstrap=bootstrap, topic="orders",
                          group=group) == "True"
        committed = kafkatools.committed_offsets(bootstrap, group, "orders")
        assert len(committed) == 8
        assert sum(committed.values()) == 1000
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == ""  # the bootstrap line was the only stdout line


def test_embedded_topics_auto_create_with_four_partitions_or_as_created() -> None:
    with EmbeddedBroker(topics={"wide": 16}) as broker:
        kafkatools.produce(broker.bootstrap, "wide", [(b"k", b"v")])
        kafkatools.produce(broker.bootstrap, "auto", [(b"k", b"v")])
        assert len(kafkatools.end_offsets(broker.bootstrap, "wide")) == 16
        assert len(kafkatools.end_offsets(broker.bootstrap, "auto")) == AUTO_CREATE_PARTITIONS


def test_embedded_create_topic_twice_is_not_an_error_and_keeps_messages() -> None:
    with EmbeddedBroker() as broker:
        broker.create_topic("replies", 2)
        kafkatools.produce(broker.bootstrap, "replies", [(b"k", b"v")])
        broker.create_topic("replies", 2)
        assert [r.value for r in kafkatools.read_to_end(broker.bootstrap, "replies")] == [b"v"]


def test_embedded_broker_refuses_use_after_close() -> None:
    broker = EmbeddedBroker()
    broker.close()
    broker.close()
    with pytest.raises(RuntimeError, match="closed"):
        broker.create_topic("t", 1)
    with pytest.raises(RuntimeError, match="closed"):
        _ = broker.bootstrap


def test_embedded_rejects_options_it_cannot_honour() -> None:
    done = subprocess.run([*AGENTD, "dev-broker", "--embedded", "--partitions", "8"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--topic NAME:N" in done.stderr
    assert done.stdout == ""


def test_embedded_command_exits_0_on_sigterm_and_stops_serving() -> None:
    proc, bootstrap = kafkatools.spawn_dev_broker("--embedded")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    host, port = bootstrap.split(":")
    with socket.socket() as sock:
        assert sock.connect_ex((host, int(port))) != 0  # nothing listens any more
