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


def test_the_daemons_own_clients_reconnect_within_a_second_unless_the_config_says_otherwise():
    """A client backing off 10 s (librdkafka's maximum) after a long broker outage noticed
    the broker back up to 10 s late (issue 20)."""
    import json

    from supervisor.config.loader import loads
    from supervisor.daemon.fleet import Fleet
    from supervisor.daemon.topics import daemon_client_settings

    assert daemon_client_settings("h:9092", {"fetch.min.bytes": 1}) == {
        "bootstrap.servers": "h:9092", "reconnect.backoff.max.ms": 1000}
    assert daemon_client_settings("h:9092", {"reconnect.backoff.max.ms": 5000})[
        "reconnect.backoff.max.ms"] == 5000
    config = loads('app = "x"\n')
    client = json.loads(Fleet(config, "h:9092").env_for(config)["AGENTD_KAFKA_CLIENT"])
    assert client == {"reconnect.backoff.max.ms": 1000}   # the instances' producers


def test_a_daemon_is_a_static_member_named_by_its_host_and_state_dir(tmp_path):
    """Static membership by default (issue 20, broker bounce): the id must be stable
    across the daemon's restarts and differ between two daemons of a group on one host
    (each has its own state_dir), or they would fence each other."""
    import socket

    from supervisor.config.loader import loads
    from supervisor.daemon.fleet import Fleet

    def identity(state_dir: str, group: str = "g") -> str:
        config = loads(f'app = "x"\ngroup_id = "{group}"\nstate_dir = "{state_dir}"\n')
        return Fleet(config, "h:9092").daemon_identity()

    a, b = identity(str(tmp_path / "a")), identity(str(tmp_path / "b"))
    assert a == identity(str(tmp_path / "a"))  # stable across restarts
    assert a != b and a.startswith(f"agentd-g-{socket.gethostname()}-")
    assert identity(str(tmp_path / "a"), "other") != a
