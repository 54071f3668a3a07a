"""``agentd reload --wait`` reports the reload's outcome: a module that no longer
imports is refused (exit 1, one line with the reason, old code still running), a
good one reloads (exit 0), and the retired zygote leaves quietly: no traceback in the
daemon's log. Real Kafka, real daemon."""

from __future__ import annotations

import json
import subprocess

import kafkatools
import pytest
from agentdproc import AGENTD, Agentd

pytestmark = pytest.mark.kafka

MODULE = """
import agentlib as faust

app = faust.App("reload-cli")


@app.agent(app.topic("{topic}"))
async def echo(stream):
    async for value in stream:
        yield value
"""


def agentd(daemon: Agentd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENTD, "-c", str(daemon.config), *args], cwd=daemon.workdir,
                          env=daemon.env, capture_output=True, text=True, timeout=180)


def test_reload_wait_reports_refusal_then_success_and_logs_no_traceback(
        kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic(2)
    settings = {"app": "echoing", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("reload-cli"), "shutdown_timeout": "10s"}
    source = MODULE.format(topic=topic)
    with Agentd(tmp_path, settings, modules={"echoing": source}) as daemon:
        daemon.wait_consuming()
        pids = daemon.instance_pids()
        (tmp_path / "echoing.py").write_text(source + "\nraise ImportError('half-deployed')\n")
        refused = agentd(daemon, "reload", "--wait")
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused" in lines[0] and "half-deployed" in lines[0]
        assert daemon.instance_pids() == pids
        status = json.loads(agentd(daemon, "status", "--json").stdout)
        assert status["reload"]["state"] == "failed"

        (tmp_path / "echoing.py").write_text(source)
        done = agentd(daemon, "reload", "--wait")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "reloaded"
        status = json.loads(agentd(daemon, "status", "--json").stdout)
        assert status["reload"] == {**status["reload"], "state": "idle", "reloads": 2,
                                    "last_error": None}
        assert daemon.stop() == 0
    # The old zygote, closed with its instances' exit reports unread, used to die on
    # ConnectionResetError and print a traceback into the log on every reload.
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
