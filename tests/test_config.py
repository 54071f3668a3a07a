"""Config loading: defaults, units, and one clear ConfigError per bad file."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.config import loader as cfg
from supervisor.config.loader import ConfigError, load_config, loads, validate_agent_names

GOOD_FULL = """
app = ["examples.agent:app", "other"]
broker = "kafka://k1:9092,k2:9093"
group_id = "adders"
commit_interval = "500ms"
shutdown_timeout = "2m"
state_dir = "/tmp/agentd-test-state"
log_level = "debug"

[kafka]
"fetch.min.bytes" = 1
session.timeout.ms = 45000
"enable.partition.eof" = false
"client.id" = "x"

[metrics]
port = 9100

[agents."examples.agent.adding"]
instances = 4
ordering = "key"
on_error = "dead_letter"
dead_letter_topic = "adds.dead"
max_retries = 5
retry_backoff = "250ms"
poison_after = 2
ring_size = "8MiB"
max_in_flight = 100
max_rss = "512MiB"
max_age = "1h"
heartbeat_timeout = 10
"""


def test_minimal_config_gets_documented_defaults():
    config = loads('app = "examples.agent"')
    assert config.app == ("examples.agent",)
    assert config.broker == "embedded" and config.embedded
    assert config.bootstrap_servers is None
    assert config.group_id is None
    assert config.commit_interval == 1.0
    assert config.shutdown_timeout == 30.0
    assert config.log_level == "INFO"
    assert dict(config.kafka) == {}
    assert config.metrics.port is None
    agent = config.agent("anything")
    assert agent.instances is None
    assert (agent.ordering, agent.on_error, agent.poison_after) == ("partition", "log", 3)
    assert agent.ring_size == 4 * 1024 * 1024
    assert agent.dead_letter_topic_for("adds") == "adds.dlq"
    assert config.state_dir.is_absolute()


def test_full_config_parses_every_key():
    config = loads(GOOD_FULL)
    assert config.app == ("examples.agent:app", "other")
    assert config.bootstrap_servers == "k1:9092,k2:9093"
    assert config.commit_interval == 0.5 and config.shutdown_timeout == 120.0
    assert config.state_dir == Path("/tmp/agentd-test-state")
    assert config.log_level == "DEBUG"
    assert dict(config.kafka) == {"fetch.min.bytes": 1, "session.timeout.ms": 45000,
                                  "enable.partition.eof": False, "client.id": "x"}
    assert config.metrics.port == 9100 and config.metrics.host == "127.0.0.1"
    agent = config.agent("examples.agent.adding")
    assert agent.instances == 4 and agent.ordering == "key"
    assert agent.dead_letter_topic_for("adds") == "adds.dead"
    assert agent.ring_size == 8 * 1024 * 1024 and agent.max_rss == 512 * 1024 * 1024
    assert agent.max_age == 3600.0 and agent.heartbeat_timeout == 10.0
    assert agent.retry_backoff == 0.25
    assert agent.max_in_flight == 100


def test_bare_host_port_broker_is_normalised_to_kafka_url():
    assert loads('app = "m"\nbroker = "localhost:9092"').broker == "kafka://localhost:9092"
    assert loads('app = "m"\nbroker = "[::1]:9092"').bootstrap_servers == "[::1]:9092"


def test_default_state_dir_is_named_after_the_config_file(tmp_path):
    path = tmp_path / "billing.toml"
    path.write_text('app = "m"')
    assert load_config(path).state_dir.name == "billing"


BAD = [
    # (toml text, key the error must name, word the reason must contain)
    ("", "app", "required"),
    ("app = 3", "app", "not \"module\""),
    ("app = []", "app", "at least one"),
    ("app = \"my-module\"", "app", "module"),
    ("app = \"m:\"", "app", "module"),
    ("app = [\"m\", 1]", "app", "module"),
    ("app = \"m\"\napps = 1", "apps", "did you mean 'app'"),
    ("app = \"m\"\nbrokers = \"embedded\"", "brokers", "did you mean 'broker'"),
    ("app = \"m\"\nbroker = \"http://x:1\"", "broker", "kafka://"),
    ("app = \"m\"\nbroker = \"kafka://host\"", "broker", "host:port"),
    ("app = \"m\"\nbroker = \"kafka://h:99999\"", "broker", "host:port"),
    ("app = \"m\"\nbroker = 9092", "broker", "string"),
    ("app = \"m\"\ngroup_id = \"\"", "group_id", "empty"),
    ("app = \"m\"\ncommit_interval = \"1 fortnight\"", "commit_interval", "duration"),
    ("app = \"m\"\ncommit_interval = 0", "commit_interval", "greater than zero"),
    ("app = \"m\"\ncommit_interval = -1", "commit_interval", "non-negative"),
    ("app = \"m\"\nshutdown_timeout = true", "shutdown_timeout", "boolean"),
    ("app = \"m\"\nshutdown_timeout = nan", "shutdown_timeout", "non-negative"),
    ("app = \"m\"\nstate_dir = \"relative/dir\"", "state_dir", "absolute"),
    ("app = \"m\"\nlog_level = \"verbose\"", "log_level", "DEBUG"),
    ("app = \"m\"\nlog_level = \"WARN\"", "log_level", "did you mean 'WARNING'"),
    ("app = \"m\"\nkafka = 1", "kafka", "table"),
    ("app = \"m\"\n[kafka]\n\"fetch.max.bytes\" = 1.5", 'kafka."fetch.max.bytes"', "integer"),
    ("app = \"m\"\n[kafka]\n\"enable.auto.commit\" = true", 'kafka."enable.auto.commit"', "agentd"),
    ("app = \"m\"\n[kafka]\n\"group.id\" = \"g\"", 'kafka."group.id"', "group_id"),
    ("app = \"m\"\n[kafka]\n\"x\" = [1]", 'kafka."x"', "array"),
    ("app = \"m\"\n[metrics]\nport = 70000", "metrics.port", "between"),
    ("app = \"m\"\n[metrics]\nprot = 9100", "metrics.prot", "did you mean 'port'"),
    ("app = \"m\"\nmetrics = 9100", "metrics", "table"),
    ("app = \"m\"\nagents = 1", "agents", "table"),
    ("app = \"m\"\n[agents.a]\ninstances = 0", 'agents.a.instances', "between"),
    ("app = \"m\"\n[agents.a]\ninstances = \"2\"", 'agents.a.instances', "integer"),
    ("app = \"m\"\n[agents.a]\nordering = \"keys\"", 'agents.a.ordering', "did you mean 'key'"),
    ("app = \"m\"\n[agents.a]\non_error = \"ignore\"", 'agents.a.on_error', "log"),
    ("app = \"m\"\n[agents.a]\ndead_letter_topic = \"bad topic\"", 'agents.a.dead_letter_topic',
     "topic"),
    ("app = \"m\"\n[agents.a]\nmax_retries = -1", 'agents.a.max_retries', "between"),
    ("app = \"m\"\n[agents.a]\npoison_after = 0", 'agents.a.poison_after', "between"),
    ("app = \"m\"\n[agents.a]\nring_size = \"4 parsecs\"", 'agents.a.ring_size', "size"),
    ("app = \"m\"\n[agents.a]\nring_size = 100", 'agents.a.ring_size', "64KiB"),
    ("app = \"m\"\n[agents.a]\nring_size = \"1.5B\"", 'agents.a.ring_size', "whole"),
    ("app = \"m\"\n[agents.a]\nmax_in_flight = 0", 'agents.a.max_in_flight', "between"),
    ("app = \"m\"\n[agents.a]\nmax_in_flight = \"4k\"", 'agents.a.max_in_flight', "integer"),
    ("app = \"m\"\n[agents.a]\nmax_rss = 0", 'agents.a.max_rss', "greater than zero"),
    ("app = \"m\"\n[agents.a]\nmax_age = \"soon\"", 'agents.a.max_age', "duration"),
    ("app = \"m\"\n[agents.a]\nheartbeat_timeout = \"0s\"", 'agents.a.heartbeat_timeout',
     "greater than zero"),
    ("app = \"m\"\n[agents.a]\ninstance = 2", 'agents.a.instance', "did you mean 'instances'"),
    ("app = \"m\"\n[agents.\"x.y\"]\nordering = 1", 'agents."x.y".ordering', "string"),
    ("app = \"m\"\n[agents]\na = 1", 'agents.a', "table"),
    ("app = \"m\"\nbroker = \"embedded\"\nbroker = \"x\"", "broker", "invalid TOML"),
    ("app = \"m\"\ncommit_interval = 1s", "commit_interval", "invalid TOML"),
]


@pytest.mark.parametrize("text,key,reason", BAD, ids=[f"{i:02d}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_config_names_the_key_and_the_reason(text, key, reason):
    with pytest.raises(ConfigError) as caught:
        loads(text)
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert "\n" not in str(caught.value)


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.toml")
    assert caught.value.key == "config" and "cannot read" in caught.value.reason


def test_agent_names_are_checked_after_import_with_did_you_mean():
    config = loads('app = "m"\n[agents.adding]\ninstances = 2\n[agents."m.pow2"]\n')
    resolved = validate_agent_names(config, ["examples.agent.adding", "m.pow2"])
    assert set(resolved.agents) == {"examples.agent.adding", "m.pow2"}
    assert resolved.agent("examples.agent.adding").instances == 2
    typo = loads('app = "m"\n[agents.addign]\n')
    with pytest.raises(ConfigError) as caught:
        validate_agent_names(typo, ["examples.agent.adding"])
    assert caught.value.key == 'agents.addign'
    assert "no such agent" in caught.value.reason and "adding" in caught.value.reason


def test_ambiguous_short_agent_name_is_refused():
    config = loads('app = "m"\n[agents.add]\n')
    with pytest.raises(ConfigError, match="ambiguous"):
        validate_agent_names(config, ["a.add", "b.add"])


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
_keys = st.sampled_from(["app", "broker", "group_id", "commit_interval", "shutdown_timeout",
                         "state_dir", "log_level", "kafka", "metrics", "agents", "port",
                         "instances", "ordering", "ring_size", "max_rss", "x.y", ""])
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_loader_raises_only_config_error_on_any_parsed_structure(data):
    try:
        cfg.from_mapping(data)
    except ConfigError as exc:
        assert exc.key and "\n" not in exc.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_loader_raises_only_config_error_on_any_text(text):
    try:
        loads(text)
    except ConfigError as exc:
        assert exc.key


@pytest.mark.parametrize("text,key,reason", BAD, ids=[f"{i:02d}-{b[1]}" for i, b in enumerate(BAD)])
def test_agentd_start_with_bad_config_exits_2_with_one_line_naming_the_key(
        tmp_path, text, key, reason):
    from click.testing import CliRunner

    from supervisor.cli.commands import main

    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["start", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "config error" in lines[0] and f"{key}: " in lines[0]


# ---------------------------------------------------------------- docs/config.md

CONFIG_DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"
DOC_SECTIONS = {"Top-level keys": "", "`[metrics]`": "metrics",
                '`[agents."<agent name>"]`': "agents"}


def documented_keys() -> dict[str, dict[str, str]]:
    """``{section: {key: default cell}}`` from the reference's key tables."""
    tables: dict[str, dict[str, str]] = {}
    section = None
    for line in CONFIG_DOC.read_text().splitlines():
        if line.startswith("## "):
            section = DOC_SECTIONS.get(line[3:].strip())
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if section is None or not line.startswith("| `") or len(cells) < 4:
            continue
        key = cells[0].strip("`").strip("[]")
        key = "agents" if key.startswith("agents.") else key
        tables.setdefault(section, {})[key] = cells[2]
    return tables


def documented_default(cell: str) -> object:
    """The value a default cell names, or ``...`` for a description (``the app's id``)."""
    if cell.startswith("unset"):
        return None
    if not cell.startswith("`"):
        return ...
    text = cell.split("`")[1]
    if "<" in text:  # a template such as `<topic>.dlq`: covered by its own test
        return ...
    if text == "{}":
        return {}
    if text.startswith('"'):
        return text.strip('"')
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return cfg.v.parse_size(text)
    except ValueError:
        return text


def test_config_reference_lists_exactly_the_keys_the_loader_accepts():
    docs = documented_keys()
    top = {f.name for f in cfg.dataclasses.fields(cfg.Config)} - {"source"}
    agent = {f.name for f in cfg.dataclasses.fields(cfg.AgentConfig)} - {"name"}
    metrics = {f.name for f in cfg.dataclasses.fields(cfg.MetricsConfig)}
    assert set(docs[""]) == top
    assert set(docs["agents"]) == agent
    assert set(docs["metrics"]) == metrics


def test_config_reference_defaults_are_the_loaders_defaults():
    config = loads('app = "m"\n[metrics]\n[agents.x]\n')
    actual = {"": config, "metrics": config.metrics, "agents": config.agents["x"]}
    checked = 0
    for section, keys in documented_keys().items():
        for key, cell in keys.items():
            expected = documented_default(cell)
            if expected is ...:
                continue
            value = getattr(actual[section], key)
            value = dict(value) if key == "kafka" else value
            if isinstance(value, str) and isinstance(expected, str):
                assert value.lower() == expected.lower(), (section, key, cell)
            else:
                assert value == expected, (section, key, cell)
            checked += 1
    assert checked >= 15  # the table format changed if this drops: fix the parser


def test_a_config_file_saved_with_a_utf8_bom_loads_like_one_without(tmp_path):
    # Windows editors save UTF-8 with a byte-order mark, which tomllib rejects.
    text = 'app = "examples.agent"\ncommit_interval = 2.5\n'
    (tmp_path / "plain").mkdir()
    (tmp_path / "bom").mkdir()
    plain, bom = tmp_path / "plain" / "agentd.toml", tmp_path / "bom" / "agentd.toml"
    plain.write_text(text, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    from_bom = load_config(bom)
    assert dataclasses.replace(from_bom, source=str(plain)) == load_config(plain)
    assert from_bom.commit_interval == 2.5


def test_max_in_flight_is_a_per_agent_key_that_reaches_the_worker():
    from supervisor.daemon.fleet import Fleet
    from supervisor.daemon.instances import AgentRuntime, Instance

    config = loads('app = "m"\n[agents.slow]\nmax_in_flight = 64\n')
    assert config.agent("slow").max_in_flight == 64
    assert config.agent("other").max_in_flight == 4096
    fleet = Fleet(config, "")
    runtime = AgentRuntime("slow", 0, ("t",), config.agent("slow"), "m")
    runtime.instances = [Instance(runtime, 0)]
    fleet.add(runtime)
    settings = fleet.worker_settings(runtime.instances[0])
    assert settings["max_in_flight"] == 64
