"""`agentd start` refuses to start with one clear line: an app that will not import
(exit 1, its exception named, no traceback) or an agent table naming no agent (exit 2)."""

from __future__ import annotations

import os
import subprocess

from agentdproc import AGENTD, REPO, write_config


def start(tmp_path, module_source: str, agents=None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "broken_app.py").write_text(module_source)
    config = write_config(tmp_path / "agentd.toml",
                          {"app": "broken_app:app", "broker": "embedded",
                           "state_dir": str(tmp_path / "state")}, agents)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    return subprocess.run([*AGENTD, "start", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_an_app_that_fails_to_import_is_one_line_and_exit_1(tmp_path):
    result = start(tmp_path, "import agentlib\napp = agentlib.App('x')\n1 / 0\n")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("agentd start: cannot import app broken_app:app: "
                    "ZeroDivisionError: division by zero")
    assert "Traceback" not in result.stderr


def test_an_agent_table_for_no_agent_is_a_config_error_exit_2(tmp_path):
    source = ("import agentlib\napp = agentlib.App('x')\n\n"
              "@app.agent(app.topic('t'))\nasync def real(stream):\n"
              "    async for _ in stream:\n        pass\n")
    result = start(tmp_path, source, agents={"imaginary": {"instances": 2}})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("agentd start: config error: agents.imaginary: no such agent")
    assert "Traceback" not in result.stderr
