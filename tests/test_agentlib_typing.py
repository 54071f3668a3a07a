"""``mypy --strict`` accepts agents typed like the seed guide's "Static types" section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

HERE = Path(__file__).parent


def _mypy_strict(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           str(path)], capture_output=True, text=True, cwd=HERE.parent,
                          timeout=300)


def test_mypy_strict_accepts_the_typed_agent_example():
    result = _mypy_strict(HERE / "typed_agent_example.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_accepts_stream_operators_codecs_tasks_timers_and_test_context():
    result = _mypy_strict(HERE / "typed_stream_api_example.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_rejects_a_wrongly_typed_agent(tmp_path: Path):
    wrong = tmp_path / "wrong_agent.py"
    wrong.write_text(
        "from collections.abc import AsyncIterable\n"
        "import agentlib as faust\n"
        "class Add(faust.Record):\n"
        "    a: int\n"
        "    b: int\n"
        "app = faust.App('wrong')\n"
        "@app.agent(app.topic('t', value_type=Add))\n"
        "async def adding(stream: faust.StreamT[Add]) -> AsyncIterable[int]:\n"
        "    async for value in stream:\n"
        "        yield value.a + value.missing\n")
    result = _mypy_strict(wrong)
    assert result.returncode == 1
    assert '"Add" has no attribute "missing"' in result.stdout


def test_typed_example_command_parses_arguments_and_options():
    import typed_agent_example as example
    command = example.app.commands["send_value"]
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    assert "--print / --no-print" in result.output
    assert example.adding.topic_names() == ["typed-adding"]
    assert example.by_account.topic_names() == [
        "typed-transfers",
        "typed_agent_example.by_account-typed-transfers-BankTransfer.account_id-repartition"]


def test_mypy_strict_types_ask_by_what_the_agent_yields(tmp_path: Path):
    result = _mypy_strict(HERE / "typed_generic_agent_example.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Revealed type is "int"' in result.stdout, result.stdout
    wrong = tmp_path / "wrong_reply.py"
    wrong.write_text((HERE / "typed_generic_agent_example.py").read_text()
                     .replace("    reveal_type(answer)\n", "    text: str = answer\n"))
    result = _mypy_strict(wrong)
    assert result.returncode == 1
    assert 'Incompatible types in assignment (expression has type "int"' in result.stdout
