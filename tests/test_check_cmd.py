"""``agentd check``: a good config lists agents/topics/instances (exit 0); every bad
config, unimportable app or unknown agent name is one line naming the key, exit 2,
never a traceback. The import happens in a throw-away process: the checking process
never imports the user's module."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from agentdproc import AGENTD, REPO
from click.testing import CliRunner
from test_config import BAD

from supervisor.cli.commands import main


def run_check(tmp_path, config_text: str, modules: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    for name, source in (modules or {}).items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    path = tmp_path / "agentd.toml"
    path.write_text(config_text)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{REPO}"}
    return subprocess.run([*AGENTD, "check", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(done: subprocess.CompletedProcess[str], key: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("agentd check: config error: ") and f"{key}: " in lines[0]


def test_good_config_lists_agents_topics_and_instances(tmp_path):
    done = run_check(tmp_path, 'app = "examples.agent"\nbroker = "kafka://127.0.0.1:9"\n'
                               '[agents.adding]\ninstances = 3\nordering = "key"\n')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].endswith("agentd.toml: ok")
    assert ("  agent examples.agent.adding: 3 instances, ordering key, on_error log, "
            "topics adding") in done.stdout.splitlines()


@pytest.mark.parametrize("text,key,reason", BAD, ids=[f"{i:02d}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_config_is_one_line_naming_the_key_exit_2(tmp_path, text, key, reason):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("agentd check: config error: ") and f"{key}: " in lines[0]
    assert reason in lines[0]


IMPORT_FAILURES = {
    "missing-module": ('app = "no_such_module_here"', {}, "ModuleNotFoundError"),
    "syntax-error": ('app = "broken_syntax"', {"broken_syntax": "def f(:\n"}, "SyntaxError"),
    "raises-on-import": ('app = "raises"', {"raises": "raise RuntimeError('no db')\n"},
                         "RuntimeError: no db"),
    "no-app-in-module": ('app = "empty_mod"', {"empty_mod": "X = 1\n"}, "0 agentlib Apps"),
    "missing-attribute": ('app = "examples.agent:nope"', {}, "AttributeError"),
    "exits-on-import": ('app = "exits"', {"exits": "import sys\nsys.exit(3)\n"}, "SystemExit"),
}


@pytest.mark.parametrize("case", sorted(IMPORT_FAILURES))
def test_unimportable_app_is_one_line_naming_app_exit_2(tmp_path, case):
    text, modules, reason = IMPORT_FAILURES[case]
    done = run_check(tmp_path, text + "\n", modules)
    assert_one_line_error(done, "app")
    assert reason in done.stderr


def test_unknown_agent_name_gets_did_you_mean_after_import(tmp_path):
    done = run_check(tmp_path, 'app = "examples.agent"\n[agents.addng]\ninstances = 2\n')
    assert_one_line_error(done, "agents.addng")
    assert "did you mean 'adding'" in done.stderr


def test_app_without_agents_is_refused(tmp_path):
    done = run_check(tmp_path, 'app = "noagents"\n',
                     {"noagents": "import agentlib\napp = agentlib.App('x')\n"})
    assert_one_line_error(done, "app")
    assert "defines no agents" in done.stderr


def test_check_never_imports_the_app_in_its_own_process(tmp_path):
    marker = tmp_path / "imported-by"
    (tmp_path / "noisy.py").write_text(textwrap.dedent(f"""
        import os, agentlib
        open({str(marker)!r}, "a").write(f"{{os.getpid()}}\\n")
        app = agentlib.App("noisy")

        @app.agent(app.topic("noisy-in"))
        async def work(stream):
            async for value in stream:
                yield value
    """))
    (tmp_path / "agentd.toml").write_text('app = "noisy"\n')
    proc = subprocess.Popen([*AGENTD, "check", str(tmp_path / "agentd.toml")], cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{REPO}"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    importers = marker.read_text().split()
    assert importers and str(proc.pid) not in importers


def test_check_without_a_config_says_how_to_give_one():
    done = subprocess.run([sys.executable, *AGENTD[1:], "check"], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "give CONFIG" in done.stderr


UNKNOWN = "no such librdkafka property"
KAFKA_REFUSED = [
    ('[kafka]\n"no.such.property" = 1\n', 'kafka."no.such.property"', UNKNOWN),
    ('[kafka]\nno.such.property = 1\n', 'kafka."no.such.property"', UNKNOWN),
    ('[kafka.socket]\ntimeout.ms = 3\n', 'kafka."socket.timeout.ms"', "outside allowed range"),
    ('[kafka]\n"security.protocol" = "bogus"\n', 'kafka."security.protocol"', "Invalid value"),
]


@pytest.mark.parametrize("table,key,reason", KAFKA_REFUSED,
                         ids=["quoted", "nested", "range", "value"])
def test_a_kafka_property_librdkafka_refuses_is_one_line_at_check_and_start(
        tmp_path, table, key, reason):
    text = f'app = "examples.agent"\nstate_dir = "{tmp_path / "state"}"\n{table}'
    done = run_check(tmp_path, text)
    assert_one_line_error(done, key)
    assert reason in done.stderr
    started = subprocess.run([*AGENTD, "start", str(tmp_path / "agentd.toml")], cwd=tmp_path,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{REPO}"},
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 2, started.stderr
    assert "Traceback" not in started.stderr
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"agentd start: config error: {key}: ")


def test_known_kafka_properties_pass_check(tmp_path):
    done = run_check(tmp_path, 'app = "examples.agent"\nbroker = "kafka://127.0.0.1:9"\n'
                               '[kafka]\nsession.timeout.ms = 10000\n"linger.ms" = 5\n')
    assert done.returncode == 0, done.stderr


TABLE_APP = '''
import agentlib as faust

app = faust.App("check-tables")
words = app.topic("words", key_type=str, value_type=str)
counts = app.Table("word_counts", default=int)


@app.agent(words)
async def count(stream):
    async for event in stream.events():
        counts[event.key] += 1
'''


def test_check_refuses_a_table_written_under_key_ordering_as_start_does(tmp_path):
    done = run_check(tmp_path, 'app = "tableapp:app"\nbroker = "kafka://127.0.0.1:9"\n'
                     '[agents.count]\nordering = "key"\n', {"tableapp": TABLE_APP})
    assert_one_line_error(done, 'agents."tableapp.count".ordering')
    assert "word_counts" in done.stderr and 'ordering = "partition"' in done.stderr


def test_check_lists_the_tables_an_agent_uses(tmp_path):
    done = run_check(tmp_path, 'app = "tableapp:app"\nbroker = "kafka://127.0.0.1:9"\n',
                     {"tableapp": TABLE_APP})
    assert done.returncode == 0, done.stderr
    assert ("table word_counts: used by tableapp.count, changelog "
            "check-tables-word_counts-changelog") in done.stdout
