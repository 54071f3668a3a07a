"""What ``agentd start`` and ``agentd check`` say about a config that parses but cannot
run: an app with no agents is one line naming ``app`` (exit 2, no traceback) from both
commands, and ``check`` refuses ``[metrics] port`` without prometheus-client exactly as
``start`` does, since check promises exit 0 only when start would accept the config."""

from __future__ import annotations

import os
import subprocess
import sys

from agentdproc import AGENTD, REPO, write_config
from click.testing import CliRunner

from supervisor.cli.commands import main

NO_AGENTS = "import agentlib\napp = agentlib.App('idle')\n"


def test_start_with_an_app_that_defines_no_agents_is_one_line_naming_app_exit_2(tmp_path):
    (tmp_path / "idle_app.py").write_text(NO_AGENTS)
    config = write_config(tmp_path / "agentd.toml",
                          {"app": "idle_app", "broker": "embedded",
                           "state_dir": str(tmp_path / "state")})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([*AGENTD, "start", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "agentd start: config error: app: idle_app defines no agents")


def test_check_refuses_metrics_port_without_prometheus_client_like_start(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    path = tmp_path / "agentd.toml"
    path.write_text('app = "examples.agent"\n[metrics]\nport = 9100\n')
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "agentd check: config error: metrics.port: needs prometheus-client: "
        "pip install 'agentd[metrics]'"]


def test_start_against_an_unreachable_broker_is_one_error_line_exit_1(tmp_path):
    """Nothing listens on port 9: after the metadata timeout (30 s) one line says so,
    and librdkafka's connection failures in between stay out of stderr."""
    config = write_config(tmp_path / "agentd.toml",
                          {"app": "examples.agent", "broker": "kafka://127.0.0.1:9",
                           "state_dir": str(tmp_path / "state")})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([*AGENTD, "start", str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert len(errors) == 1, errors[:5]
    assert errors[0].startswith("agentd start: cannot reach Kafka at 127.0.0.1:9: ")
