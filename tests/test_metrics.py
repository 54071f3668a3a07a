"""The Prometheus endpoint (``[metrics] port``) serves per-agent and per-instance
processed, errors, in flight, restarts, RSS, lag and commit latency while agentd runs
on the real broker, and the counts match what was fed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request

import kafkatools
import pytest
from agentdproc import AGENTD, Agentd, wait_until
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.kafka

FAILING_AGENT = """
import os
import agentlib as faust

app = faust.App("metrics-app")
source = app.topic(os.environ["IN_TOPIC"], value_type=bytes, value_serializer="raw")


@app.agent(source)
async def judge(stream):
    async for value in stream:
        if value == b"bad":
            raise ValueError("bad value")
        yield value
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``{sample name: [(labels, value), ...]}`` from one scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples, name: str, **labels: str) -> float:
    return sum(value for found, value in samples.get(name, [])
               if all(found.get(k) == v for k, v in labels.items()))


def test_endpoint_serves_agent_and_instance_metrics_during_a_run(kafka_bootstrap, new_topic,
                                                                 tmp_path):
    topic = new_topic(4)
    port = free_port()
    settings = {"app": "judging", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("metrics"), "commit_interval": "200ms"}
    daemon = Agentd(tmp_path, settings, modules={"judging": FAILING_AGENT},
                    agents={"judge": {"instances": 2}}, env={"IN_TOPIC": topic})
    daemon.config.write_text(daemon.config.read_text() + f"[metrics]\nport = {port}\n")
    agent = "judging.judge"
    with daemon:
        daemon.wait_consuming()
        values = [b"bad" if i % 10 == 0 else b"ok" for i in range(200)]
        kafkatools.produce(kafka_bootstrap, topic, [(str(i).encode(), v)
                                                    for i, v in enumerate(values)])

        def all_counted():
            samples = scrape(port)
            done = total(samples, "agentd_agent_processed_total", agent=agent)
            lag = total(samples, "agentd_agent_lag", agent=agent)
            return samples if done == len(values) and lag == 0 else None

        samples = wait_until(all_counted, 60, "metrics to count every record and lag 0")
        assert total(samples, "agentd_agent_errors_total", agent=agent) == 20
        per_instance = [total(samples, "agentd_instance_processed_total", agent=agent,
                              instance=str(i)) for i in range(2)]
        assert sum(per_instance) == len(values)
        assert sum(total(samples, "agentd_instance_errors_total", agent=agent,
                         instance=str(i)) for i in range(2)) == 20
        assert total(samples, "agentd_agent_instances", agent=agent) == 2
        assert total(samples, "agentd_agent_in_flight", agent=agent) == 0
        assert all(value > 0 for _, value in samples["agentd_instance_rss_bytes"])
        assert len(samples["agentd_instance_rss_bytes"]) == 2
        assert len(samples["agentd_partition_lag"]) == 4
        assert total(samples, "agentd_commit_latency_seconds_count") > 0
        assert total(samples, "agentd_up") == 1

        victim = daemon.instance_pids()[0]
        os.kill(victim, signal.SIGKILL)

        def restart_counted():
            samples = scrape(port)
            return total(samples, "agentd_agent_restarts_total", agent=agent) == 1

        wait_until(restart_counted, 30, "the killed instance's restart to be counted")
        assert daemon.stop() == 0


def test_metrics_port_in_use_is_a_config_error_naming_the_key(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "agentd.toml"
        config.write_text(f'app = "examples.agent"\nbroker = "kafka://127.0.0.1:9"\n'
                          f'state_dir = "{tmp_path / "state"}"\n[metrics]\nport = {port}\n')
        done = subprocess.run([*AGENTD, "start", str(config)], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "config error: metrics.port: cannot serve on" in lines[0]
    assert not (tmp_path / "state" / "control.sock").exists()
