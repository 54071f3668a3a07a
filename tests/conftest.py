"""Shared fixtures: one real Kafka broker per test session, unique topics per test.

The broker is ``supervisor.devbrokers.devbroker.DevBroker`` (Apache Kafka from Maven jars), started
once for the whole run, or the broker named by ``AGENTD_TEST_BOOTSTRAP`` when set (a
broker you keep running with ``agentd dev-broker`` saves its start-up on every run).
If it cannot start, every test that needs it fails with the reason: a test suite that
skips its integration tests when Kafka is missing proves nothing.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Callable, Iterator

import kafkatools  # tests/ is on sys.path: pytest puts a rootless conftest's dir there
import pytest
from confluent_kafka.admin import AdminClient

from supervisor.devbrokers.devbroker import DevBroker, DevBrokerError


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="tests/faults: longer loads and fault runs (minutes each)")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a real Kafka broker shared by the whole session."""
    given = os.environ.get("AGENTD_TEST_BOOTSTRAP")
    if given:
        try:
            AdminClient({"bootstrap.servers": given}).list_topics(timeout=15)
        except Exception as exc:
            pytest.fail(f"AGENTD_TEST_BOOTSTRAP={given} does not answer: {exc}", pytrace=False)
        yield given
        return
    broker = DevBroker(partitions=8)
    try:
        broker.start()
    except DevBrokerError as exc:
        pytest.fail(f"the test Kafka broker could not start: {exc}", pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        close_leftover_clients()
        broker.stop()


def close_leftover_clients() -> None:
    """Close the agentlib clients still open in this process before the broker stops.

    A module-level App (``examples.sinks.app``, an App a test made) keeps its producer
    and reply consumer for the life of the process: ``stop_clients`` only flushes, and
    the producer's poll thread keeps it reachable. Left open, librdkafka keeps
    reconnecting to the stopped session broker and prints "Connection refused" lines
    after the test summary; closed here, nothing talks to a broker that is gone.
    """
    from agentlib.kafka import KafkaProducer
    from agentlib.replies import ReplyConsumer

    gc.collect()
    for obj in gc.get_objects():
        if isinstance(obj, (ReplyConsumer, KafkaProducer)):
            obj.close(timeout=1.0)
    gc.collect()  # plain confluent-kafka clients left in reference cycles


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: ``new_topic(partitions=8)`` creates a fresh topic and returns its name.

    Names start with the test's name, so a topic seen on a kept broker says who made it.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", request.node.name)[:60]

    def make(partitions: int = 8) -> str:
        return kafkatools.create_topic(kafka_bootstrap, kafkatools.unique_name(stem),
                                       partitions)

    return make
