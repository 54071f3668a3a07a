"""The supervisor's own clients (admin, dead-letter producer) get the [kafka] keys that
say how to reach the cluster, and not the consumer's tuning."""

from supervisor.daemon.topics import connection_settings


def test_connection_keys_of_the_kafka_table_reach_the_supervisors_own_clients():
    kafka = {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
             "sasl.username": "u", "ssl.ca.location": "/ca.pem", "client.id": "agentd-a",
             "fetch.min.bytes": 1, "session.timeout.ms": 6000}
    assert connection_settings("h:9092", kafka) == {
        "bootstrap.servers": "h:9092", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN", "sasl.username": "u", "ssl.ca.location": "/ca.pem",
        "client.id": "agentd-a"}


def test_agentlib_clients_in_instances_get_the_connection_keys(monkeypatch):
    from agentlib.kafka import KafkaProducer

    monkeypatch.setenv("AGENTD_KAFKA_CLIENT",
                       '{"client.id": "agentd-a", "socket.nagle.disable": true}')
    monkeypatch.setenv("AGENTD_BROKER", "h:9092")
    config = KafkaProducer().config()
    assert config["client.id"] == "agentd-a" and config["socket.nagle.disable"] is True
    assert config["bootstrap.servers"] == "h:9092"
