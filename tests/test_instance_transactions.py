"""The instance's transactional producer under exactly once: what it is built with.
No broker: the producer's librdkafka configuration is read, not connected."""

from __future__ import annotations

from types import SimpleNamespace

from supervisor.instance.transactions import LINGER_MS, Transactions


def fake_agent() -> SimpleNamespace:
    app = SimpleNamespace(conf=SimpleNamespace(broker="kafka://127.0.0.1:9"), _producer=None)
    return SimpleNamespace(app=app)


def test_exactly_once_gives_the_app_a_transactional_producer_that_batches():
    agent = fake_agent()
    txn = Transactions.install(agent, {"exactly_once": True, "transactional_id": "agentd-g-h-a-0",
                                       "commit_interval": 0.25})
    assert txn is not None and txn.interval == 0.25
    assert agent.app._producer is txn.producer
    config = txn.producer.config()
    assert config["transactional.id"] == "agentd-g-h-a-0"
    assert config["linger.ms"] == LINGER_MS > 0  # outputs wait for the commit anyway
    assert config["bootstrap.servers"] == "127.0.0.1:9"


def test_at_least_once_leaves_the_apps_producer_alone():
    agent = fake_agent()
    assert Transactions.install(agent, {"commit_interval": 0.25}) is None
    assert agent.app._producer is None
