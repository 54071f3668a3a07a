"""The agentd TOML config: parsed with ``tomllib`` into frozen dataclasses, validated.

Every problem is a ``ConfigError`` carrying the dotted key path and one reason, so the
CLI can print ``agentd <command>: config error: <key>: <reason>`` and exit 2 without a traceback.
Validation happens in two steps because agent names are only known after the app is
imported (in a throw-away process): ``load_config`` checks everything it can from the
file alone, ``validate_agent_names`` checks ``[agents."<name>"]`` tables afterwards.
The full reference, with defaults, is ``docs/config.md``; keep the two in step.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from supervisor.config import values as v
from supervisor.config.units import kind
from supervisor.config.values import (
    EMBEDDED,
    ERROR_POLICIES,
    ORDERINGS,
    did_you_mean,
)

DEFAULT_RING_SIZE = 4 * 1024 * 1024
#: records an instance holds fed and not yet done before it stops reading its ring
DEFAULT_MAX_IN_FLIGHT = 4096
MAX_MAX_IN_FLIGHT = 1_000_000
MAX_INSTANCES = 1024
# librdkafka settings agentd owns: letting a user set them would break the invariant
# (auto commit) or contradict a top-level key.
RESERVED_KAFKA_KEYS = {
    "enable.auto.commit": "agentd commits only acknowledged offsets itself",
    "enable.auto.offset.store": "agentd stores only acknowledged offsets itself",
    "group.id": "use the top-level group_id key",
    "bootstrap.servers": "use the top-level broker key",
    "metadata.broker.list": "use the top-level broker key",
}

T = TypeVar("T")


class ConfigError(Exception):
    """A config problem: ``key`` is the dotted path (``agents."adding".ordering``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Per-agent settings; ``instances=None`` means "the decorator's concurrency"."""

    name: str
    instances: int | None = None
    ordering: str = "partition"
    on_error: str = "log"
    dead_letter_topic: str | None = None
    max_retries: int = 3
    retry_backoff: float = 1.0
    poison_after: int = 3
    ring_size: int = DEFAULT_RING_SIZE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_rss: int | None = None
    max_age: float | None = None
    heartbeat_timeout: float = 30.0

    def dead_letter_topic_for(self, topic: str) -> str:
        """The DLQ for a record read from ``topic``: the configured one or ``<topic>.dlq``."""
        return self.dead_letter_topic or f"{topic}.dlq"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The Prometheus endpoint; off unless ``port`` is set."""

    port: int | None = None
    host: str = "127.0.0.1"


#: ``processing_guarantee`` values (Faust's spelling).
GUARANTEES = ("at_least_once", "exactly_once")


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated config file. ``group_id=None`` means "the app's id"."""

    app: tuple[str, ...]
    state_dir: Path
    #: Where table shards live (RocksDB, one database per table partition).
    table_dir: Path = Path("tables")
    #: Standby copies of table partitions other daemons own (Faust's setting, default 1).
    table_standby_replicas: int = 1
    #: ``at_least_once`` or ``exactly_once``; None: the app's ``processing_guarantee``
    #: (Faust's setting), else at least once.
    processing_guarantee: str | None = None
    broker: str = EMBEDDED
    group_id: str | None = None
    commit_interval: float = 1.0
    shutdown_timeout: float = 30.0
    log_level: str = "INFO"
    kafka: Mapping[str, str | int | bool] = field(default_factory=lambda: MappingProxyType({}))
    metrics: MetricsConfig = MetricsConfig()
    agents: Mapping[str, AgentConfig] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "<string>"

    @property
    def embedded(self) -> bool:
        """True when the supervisor must start the in-memory broker itself."""
        return self.broker == EMBEDDED

    @property
    def bootstrap_servers(self) -> str | None:
        """``h:p,h:p`` for librdkafka, or None for the embedded broker."""
        if self.embedded:
            return None
        return self.broker.removeprefix("kafka://")

    def agent(self, name: str) -> AgentConfig:
        """The settings for agent ``name``: its table, or all defaults when it has none."""
        return self.agents.get(name) or AgentConfig(name=name)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate ``path``; raises ``ConfigError`` for every problem, I/O included."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM (Notepad) is not TOML
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"cannot read {os.fspath(path)}: {_os_reason(exc)}") from None
    return loads(text, source=os.fspath(path))


def loads(text: str, source: str = "<string>") -> Config:
    """Parse TOML ``text``; ``source`` names the file (its stem names the state dir)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_key_at_error(text, exc), f"invalid TOML: {exc}") from None
    return from_mapping(data, source=source)


def from_mapping(data: Mapping[str, Any], source: str = "<string>") -> Config:
    """Validate already-parsed TOML (a dict of tables) into a ``Config``."""
    table = _Table(data, "")
    app = table.take("app", v.app_list, required=True)
    stem = Path(source).stem if source != "<string>" else "agentd"
    config = Config(
        app=app,
        broker=table.take("broker", v.broker, EMBEDDED),
        group_id=table.take("group_id", v.nonempty_string, None),
        commit_interval=table.take("commit_interval", v.positive_duration, 1.0),
        shutdown_timeout=table.take("shutdown_timeout", v.positive_duration, 30.0),
        state_dir=table.take("state_dir", v.absolute_path, None) or default_state_dir(stem),
        table_dir=table.take("table_dir", v.absolute_path, None) or default_table_dir(stem),
        table_standby_replicas=table.take("table_standby_replicas",
                                          lambda x: v.integer(x, 0, 16), 1),
        processing_guarantee=table.take("processing_guarantee", v.choice(GUARANTEES), None),
        log_level=table.take("log_level", v.log_level, "INFO"),
        kafka=MappingProxyType(table.take_table("kafka", _kafka_table, {})),
        metrics=table.take_table("metrics", _metrics_table, MetricsConfig()),
        agents=MappingProxyType(table.take_table("agents", _agents_table, {})),
        source=source,
    )
    table.reject_unknown()
    return config


def validate_agent_names(config: Config, known_names: Iterable[str]) -> Config:
    """Check ``[agents."<name>"]`` against the app's agents, after it is imported.

    A table may name an agent by its full name (``examples.agent.adding``) or, when
    unambiguous, by its last part (``adding``). Returns the config with every table
    keyed by the full name, so the daemon looks agents up one way only.
    """
    known = list(known_names)
    by_short: dict[str, list[str]] = {}
    for name in known:
        by_short.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    resolved: dict[str, AgentConfig] = {}
    for name, agent in config.agents.items():
        key = f"agents.{_key_part(name)}"
        if name in known:
            full = name
        elif len(by_short.get(name, [])) == 1:
            full = by_short[name][0]
        elif name in by_short:
            raise ConfigError(key, f"ambiguous agent name; use one of {sorted(by_short[name])}")
        else:
            hint = did_you_mean(name, [*known, *by_short])
            raise ConfigError(key, "no such agent in the app" + hint)
        if full in resolved:
            raise ConfigError(key, f"agent {full!r} is configured twice")
        resolved[full] = dataclasses.replace(agent, name=full)
    return dataclasses.replace(config, agents=MappingProxyType(resolved))


def default_table_dir(stem: str = "agentd") -> Path:
    """Where table shards live when ``table_dir`` is not set.

    ``$STATE_DIRECTORY/tables`` under a unit with ``StateDirectory=`` (the
    shipped units set ``StateDirectory=agentd``: ``/var/lib/agentd``), else
    ``$XDG_STATE_HOME/agentd/<stem>/tables``, else ``~/.local/state/agentd/<stem>/
    tables``. Unlike the control socket, this must survive a reboot.
    """
    systemd = (os.environ.get("STATE_DIRECTORY") or "").split(":")[0]
    if systemd and os.path.isabs(systemd):
        return Path(systemd) / "tables"
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "agentd" / stem / "tables"
    try:
        return Path.home() / ".local" / "state" / "agentd" / stem / "tables"
    except RuntimeError:  # no $HOME and no passwd entry (some containers)
        return Path(tempfile.gettempdir()) / f"agentd-{os.geteuid()}" / stem / "tables"


def default_state_dir(stem: str = "agentd") -> Path:
    """Where the control socket lives when ``state_dir`` is not set.

    ``/run/agentd/<stem>`` (``<stem>`` = the config file's name without ``.toml``) when
    this user may write there or in ``/run/agentd`` (root, or a unit's
    ``RuntimeDirectory=``), else ``$XDG_RUNTIME_DIR/agentd/<stem>``, else
    ``~/.local/state/agentd/<stem>``. It depends only on the user and the config file's
    name, not on variables systemd sets, so ``agentd status -c same.toml`` run from a
    shell finds the daemon's socket, and two template instances never share one.
    """
    run = Path("/run/agentd")
    if (os.access(run / stem, os.W_OK) or os.access(run, os.W_OK)
            or (not run.exists() and os.access("/run", os.W_OK))):
        return run / stem
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "agentd" / stem
    try:
        return Path.home() / ".local" / "state" / "agentd" / stem
    except RuntimeError:  # no $HOME and no passwd entry (some containers)
        return Path(tempfile.gettempdir()) / f"agentd-{os.geteuid()}" / stem


class _Table:
    """One TOML table being consumed key by key, so leftovers are the unknown keys."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path or "config", f"must be a table, not {kind(data)}")
        self.data = dict(data)
        self.path = path
        self.known: list[str] = []

    def key(self, name: str) -> str:
        part = _key_part(name)
        return f"{self.path}.{part}" if self.path else part

    def take(self, name: str, parse: Callable[[Any], T], default: Any = None,
             required: bool = False) -> T:
        """Pop ``name`` parsed by ``parse`` (ValueError -> ConfigError at this key)."""
        return self.take_table(name, lambda value, key: parse(value), default, required)

    def take_table(self, name: str, parse: Callable[[Any, str], T], default: Any = None,
                   required: bool = False) -> T:
        """Like ``take`` for a value that is itself a table: ``parse`` gets its key path."""
        self.known.append(name)
        if name not in self.data:
            if required:
                raise ConfigError(self.key(name), "is required")
            return default
        key = self.key(name)
        try:
            return parse(self.data.pop(name), key)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None

    def reject_unknown(self) -> None:
        for name in self.data:
            raise ConfigError(self.key(name), "unknown key" + did_you_mean(name, self.known))


def _key_part(name: str) -> str:
    """A TOML key as written in a file: bare when it can be, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _quote(name)


def _quote(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _os_reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _key_at_error(text: str, exc: tomllib.TOMLDecodeError) -> str:
    """Best effort: the key on the line tomllib complained about, else ``line N``."""
    lines = text.splitlines()
    match = re.search(r"line (\d+)", str(exc))
    if match:
        lineno = int(match.group(1))
    elif "end of document" in str(exc) and any(line.strip() for line in lines):
        lineno = max(i for i, line in enumerate(lines, 1) if line.strip())
    else:
        return "config"
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    found = re.match(r"\s*([A-Za-z0-9_.\"-]+)\s*=", line)
    return found.group(1) if found else f"line {lineno}"


def _kafka_table(value: Any, key: str) -> dict[str, str | int | bool]:
    """librdkafka properties; unquoted dotted keys (``fetch.min.bytes = 1``) are joined."""
    flat: dict[str, str | int | bool] = {}

    def walk(table: Any, prefix: str) -> None:
        if not isinstance(table, Mapping):
            raise ValueError(f"must be a table, not {kind(table)}")
        for name, item in table.items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(item, Mapping):
                walk(item, full)
                continue
            where = f"kafka.{_quote(full)}"
            if full in RESERVED_KAFKA_KEYS:
                raise ConfigError(where, f"is set by agentd: {RESERVED_KAFKA_KEYS[full]}")
            if isinstance(item, float) or not isinstance(item, (str, int, bool)):
                raise ConfigError(where, f"must be a string, integer or boolean, not {kind(item)}")
            if full in flat:
                raise ConfigError(where, "is given twice")
            flat[full] = item

    walk(value, "")
    return flat


def _metrics_table(value: Any, key: str) -> MetricsConfig:
    table = _Table(value, key)
    metrics = MetricsConfig(
        port=table.take("port", lambda x: v.integer(x, 1, 65535), None),
        host=table.take("host", v.nonempty_string, "127.0.0.1"),
    )
    table.reject_unknown()
    return metrics


def _agents_table(value: Any, key: str) -> dict[str, AgentConfig]:
    outer = _Table(value, key)
    agents: dict[str, AgentConfig] = {}
    for name in list(outer.data):
        agents[name] = _agent_table(name, outer.data.pop(name), outer.key(name))
    return agents


def _agent_table(name: str, value: Any, key: str) -> AgentConfig:
    if not name.strip():
        raise ConfigError(key, "agent name must not be empty")
    table = _Table(value, key)
    agent = AgentConfig(
        name=name,
        instances=table.take("instances", lambda x: v.integer(x, 1, MAX_INSTANCES), None),
        ordering=table.take("ordering", v.choice(ORDERINGS), "partition"),
        on_error=table.take("on_error", v.choice(ERROR_POLICIES), "log"),
        dead_letter_topic=table.take("dead_letter_topic", v.topic_name, None),
        max_retries=table.take("max_retries", lambda x: v.integer(x, 0, 1_000_000), 3),
        retry_backoff=table.take("retry_backoff", v.duration, 1.0),
        poison_after=table.take("poison_after", lambda x: v.integer(x, 1, 1000), 3),
        ring_size=table.take("ring_size", v.ring_size, DEFAULT_RING_SIZE),
        max_in_flight=table.take("max_in_flight", lambda x: v.integer(x, 1, MAX_MAX_IN_FLIGHT),
                                 DEFAULT_MAX_IN_FLIGHT),
        max_rss=table.take("max_rss", v.positive_size, None),
        max_age=table.take("max_age", v.positive_duration, None),
        heartbeat_timeout=table.take("heartbeat_timeout", v.positive_duration, 30.0),
    )
    table.reject_unknown()
    return agent
