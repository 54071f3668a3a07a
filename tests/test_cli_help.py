"""Every ``agentd`` command answers ``--help``; client commands without a daemon or
without a config fail with one line and the documented exit code."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from supervisor.cli.commands import main

COMMANDS = ["start", "check", "status", "reload", "stop", "send", "ask", "dev-broker"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {command} ") or \
        result.output.startswith(f"Usage: agentd {command} ")


def test_help_documents_shell_completion():
    result = CliRunner().invoke(main, ["--help"])
    assert "_AGENTD_COMPLETE=bash_source agentd" in result.output
    assert all(command in result.output for command in COMMANDS)


@pytest.mark.parametrize("command", ["status", "reload", "stop"])
def test_client_command_without_config_says_how_to_name_the_daemon(command, monkeypatch):
    monkeypatch.delenv("AGENTD_CONFIG", raising=False)
    result = CliRunner().invoke(main, [command])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"agentd {command}: which daemon? give -c CONFIG or set " \
                                    "AGENTD_CONFIG"


@pytest.mark.parametrize("command", ["status", "reload", "stop"])
def test_client_command_with_no_daemon_running_exits_3_with_one_line(command, tmp_path):
    config = tmp_path / "agentd.toml"
    config.write_text(f'app = "examples.agent"\nstate_dir = "{tmp_path / "state"}"\n')
    result = CliRunner().invoke(main, ["-c", str(config), command])
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "agentd is not running" in lines[0]


def test_send_without_app_or_config_asks_for_one(monkeypatch):
    monkeypatch.delenv("AGENTD_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["send", "adding", "1"])
    assert result.exit_code == 2
    assert "give -A MODULE[:ATTR] or -c CONFIG" in result.stderr


def test_app_commands_are_listed_with_the_app_option():
    result = CliRunner().invoke(main, ["-A", "examples.agent", "--help"])
    assert result.exit_code == 0
    assert "send_value" in result.output


def test_unknown_app_module_is_one_line_exit_2():
    result = CliRunner().invoke(main, ["-A", "no_such_module_x", "send_value", "1", "2"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot import app no_such_module_x" in lines[0]


APP_WITH_COMMANDS = """
import agentlib
from agentlib.cli import argument

app = agentlib.App("cmds")


@app.command(argument("code", type=int))
def leave(code: int) -> None:
    import click
    click.get_current_context().exit(code)


@app.command()
def explode() -> None:
    raise RuntimeError("kaboom")
"""


def test_app_command_errors_are_one_line_and_its_exit_codes_pass_through(tmp_path,
                                                                          monkeypatch):
    (tmp_path / "cmdapp.py").write_text(APP_WITH_COMMANDS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(main, ["-A", "cmdapp", "leave", "4"]).exit_code == 4
    failed = runner.invoke(main, ["-A", "cmdapp", "explode"])
    assert failed.exit_code == 1
    assert failed.stderr.strip() == "agentd explode: RuntimeError: kaboom"
    debug = runner.invoke(main, ["--debug", "-A", "cmdapp", "explode"])
    assert isinstance(debug.exception, RuntimeError)
