"""Client commands against a running daemon on the real broker: the seed's
``send_value`` app command, ``send``, ``ask``, ``status`` (table and JSON schema),
``stop``; and the one-line errors when there is no daemon or no such agent.

One daemon (the seed's ``examples.agent``, its own consumer group) serves the whole
module: starting one costs seconds, and every test here only reads or adds messages.
"""

from __future__ import annotations

import json
import os
import subprocess

import kafkatools
import pytest
from agentdproc import AGENTD, REPO, Agentd, wait_until, write_config

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def daemon(kafka_bootstrap, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli-client")
    settings = {"app": "examples.agent", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("cli-client"), "commit_interval": "200ms",
                "shutdown_timeout": "20s"}
    with Agentd(workdir, settings, agents={"adding": {"instances": 2}}) as running:
        running.wait_consuming()
        yield running


def agentd(daemon: Agentd, *args: str, config: bool = True,
           timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``agentd [-c CONFIG] ARGS`` as an operator would, in the daemon's directory."""
    cmd = [*AGENTD, *(["-c", str(daemon.config)] if config else []), *args]
    return subprocess.run(cmd, cwd=daemon.workdir, env=daemon.env, capture_output=True,
                          text=True, timeout=timeout)


def test_seed_send_value_command_prints_the_request_then_the_sum(daemon):
    done = agentd(daemon, "-A", "examples.agent", "send_value", "4", "8", "--print")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Sending Add(4, 8)...", "12"]


def test_app_command_finds_the_app_through_agentd_config_env(daemon):
    env = {**daemon.env, "AGENTD_CONFIG": str(daemon.config)}
    done = subprocess.run([*AGENTD, "send_value", "40", "2"], cwd=daemon.workdir, env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["42"]


def test_ask_prints_the_agents_reply_as_json(daemon):
    done = agentd(daemon, "ask", "adding", '{"a": 20, "b": 22}', "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_send_encodes_value_with_the_agents_record_type(daemon, kafka_bootstrap):
    done = agentd(daemon, "send", "examples.agent.adding", '{"a": 7, "b": 5}', "--key", "k1")
    assert done.returncode == 0, done.stderr
    topic, _, offset = done.stdout.strip().partition("@")
    assert topic.startswith("adding[")
    partition = int(topic[len("adding["):-1])
    sent = [r for r in kafkatools.read_to_end(kafka_bootstrap, "adding")
            if r.partition == partition and r.offset == int(offset)]
    assert len(sent) == 1 and sent[0].key == b"k1"
    body = json.loads(sent[0].value)
    assert (body["a"], body["b"]) == (7, 5)
    assert body["__faust"]["ns"].endswith("Add")


def test_send_to_unknown_agent_is_one_line_exit_2(daemon):
    done = agentd(daemon, "send", "addign", '{"a": 1, "b": 2}')
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "no agent 'addign'" in done.stderr and "did you mean 'adding'" in done.stderr


def test_send_refuses_a_value_the_agent_could_not_decode(daemon):
    done = agentd(daemon, "send", "adding", '{"a": 1}')
    assert done.returncode == 2
    assert "does not fit Add" in done.stderr and "Traceback" not in done.stderr


def test_status_json_follows_the_documented_schema(daemon):
    def processed_something():
        doc = json.loads(agentd(daemon, "status", "--json").stdout)
        return doc if doc["agents"][0]["processed"] > 0 else None

    agentd(daemon, "ask", "adding", '{"a": 1, "b": 1}', "--timeout", "60")
    doc = wait_until(processed_something, 30, "status to count a processed record")
    assert doc["schema"] == 1 and doc["state"] == "running" and doc["ok"] is True
    assert doc["pid"] == daemon.proc.pid
    assert set(doc) >= {"version", "config", "started_at", "uptime_s", "broker", "embedded",
                        "group_id", "agents", "instances", "partitions", "lag", "commit",
                        "reload", "last_error"}
    (agent,) = doc["agents"]
    assert agent["name"] == "examples.agent.adding" and agent["instances"] == 2
    assert agent["topics"] == ["adding"]
    instances = doc["instances"]
    assert sorted(i["pid"] for i in instances) == daemon.instance_pids()
    for inst in instances:
        assert inst["state"] == "running" and inst["rss_bytes"] > 0
        assert set(inst) >= {"agent", "index", "restarts", "processed", "errors",
                             "in_flight", "pending", "cpu_percent", "partitions"}
    owned = sorted(p for i in instances for p in i["partitions"])
    assigned = sorted(f"{p['topic']}:{p['partition']}" for p in doc["partitions"])
    assert owned == assigned and len(assigned) == 8
    assert all(set(p) >= {"committed", "high_watermark", "lag", "in_flight", "paused"}
               for p in doc["partitions"])
    assert doc["reload"]["state"] in ("idle", "reloading", "failed")
    assert set(doc["commit"]) == {"commits", "failures", "last_latency_s"}


def test_status_table_names_every_instance(daemon):
    done = agentd(daemon, "status")
    assert done.returncode == 0, done.stderr
    assert "examples.agent.adding[0]" in done.stdout
    assert "examples.agent.adding[1]" in done.stdout
    assert done.stdout.startswith("agentd ")


def test_status_shows_the_newest_record_error_of_the_instance_that_had_it(
        daemon, kafka_bootstrap):
    kafkatools.produce(kafka_bootstrap, "adding", [(b"bad", b"{not json")])

    def errored_instance():
        doc = json.loads(agentd(daemon, "status", "--json").stdout)
        hit = [i for i in doc["instances"] if i["last_error"] is not None]
        return (doc, hit[0]) if hit else None

    doc, inst = wait_until(errored_instance, 30, "an instance to report the bad record")
    assert inst["errors"] >= 1 and inst["last_error"]["message"]
    assert inst["last_error"]["at"] <= doc["started_at"] + doc["uptime_s"] + 1
    assert doc["last_error"] is not None


def test_stop_drains_and_returns_once_the_daemon_exited(daemon):
    done = agentd(daemon, "stop")
    assert done.returncode == 0, done.stderr
    assert daemon.proc.wait(30) == 0
    after = agentd(daemon, "status")
    assert after.returncode == 3
    assert after.stderr.strip().endswith("control.sock)") and "not running" in after.stderr


def test_ask_finds_the_embedded_broker_through_the_daemon(tmp_path):
    settings = {"app": "examples.agent", "broker": "embedded", "shutdown_timeout": "10s"}
    with Agentd(tmp_path, settings) as embedded:
        embedded.wait_consuming()
        done = agentd(embedded, "ask", "adding", '{"a": 2, "b": 3}', "--timeout", "60")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "5"
        assert embedded.stop() == 0


@pytest.mark.parametrize("command", ["send", "ask"])
def test_send_and_ask_to_an_unreachable_broker_are_one_line_exit_1(tmp_path, command):
    """Nothing listens on port 9: one line after the metadata timeout, not librdkafka's
    connection failures every 50 ms for the whole delivery timeout."""
    config = write_config(tmp_path / "agentd.toml",
                          {"app": "examples.agent", "broker": "kafka://127.0.0.1:9",
                           "state_dir": str(tmp_path / "state")})
    done = subprocess.run([*AGENTD, "-c", str(config), command, "adding", '{"a": 1, "b": 2}'],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"agentd {command}: cannot reach Kafka at 127.0.0.1:9: "
        + done.stderr.split("127.0.0.1:9: ", 1)[-1].strip()]


def test_client_commands_get_the_configs_kafka_connection_keys(tmp_path, monkeypatch):
    """`agentd -c CONFIG send/ask/app command` reach a TLS/SASL cluster as the daemon's
    own instances do: the [kafka] connection keys, not its consumer tuning."""
    from supervisor.cli.appcmds import use_daemon_broker
    from supervisor.config.loader import loads

    monkeypatch.setenv("AGENTD_BROKER", "")  # unset for the call, restored afterwards
    monkeypatch.setenv("AGENTD_KAFKA_CLIENT", "")
    config = loads('app = "examples.agent"\nbroker = "kafka://kafka1:9093"\n[kafka]\n'
                   '"security.protocol" = "SASL_SSL"\n"sasl.mechanism" = "PLAIN"\n'
                   '"fetch.min.bytes" = 1\n')
    use_daemon_broker(config)
    assert os.environ["AGENTD_BROKER"] == "kafka1:9093"
    assert json.loads(os.environ["AGENTD_KAFKA_CLIENT"]) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
