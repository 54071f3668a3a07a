"""Commands that need the user's app: ``check``, ``send``, ``ask`` and ``@app.command``s.

``send``/``ask`` and app commands import the app *in this process* and use agentlib's
client side (the agent's topic encodes the value; ``ask`` waits on the reply
consumer), so what the CLI sends is byte for byte what the app's own code would.
``check`` imports the app in a *throw-away* process instead (the zygote's import
path): importing runs module-level user code, and a config check must not leave
its side effects, threads or a half-imported module in the checking process.

Errors are :class:`~supervisor.cli.clientcmds.ClientError` (one sentence, exit code).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from supervisor.cli.clientcmds import ClientError, daemon_broker
from supervisor.config.loader import Config, ConfigError, load_config, validate_agent_names
from supervisor.config.values import did_you_mean

__all__ = ["ask", "check", "find_agent", "load_apps", "parse_value", "send",
           "use_daemon_broker"]


def app_specs(app_option: str | None, config: Config | None) -> list[str]:
    """What to import: ``-A MODULE`` wins, else the config's ``app``."""
    if app_option:
        return [app_option]
    if config is not None:
        return list(config.app)
    raise ClientError("which app? give -A MODULE[:ATTR] or -c CONFIG", 2)


def load_apps(specs: Sequence[str]) -> list[Any]:
    """Import each ``module[:attr]`` and return its agentlib App (as the zygote does).

    The working directory goes on ``sys.path`` first, as ``python -m`` would put it:
    an installed ``agentd`` script otherwise sees only its own bin directory.
    """
    from supervisor.instance.zygote import load_app

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    apps = []
    for spec in specs:
        try:
            apps.append(load_app(spec))
        except Exception as exc:
            raise ClientError(f"cannot import app {spec}: {type(exc).__name__}: {exc}",
                              2) from exc
    return apps


def use_daemon_broker(config: Config | None) -> None:
    """Point agentlib at the daemon's Kafka (``AGENTD_BROKER``) unless already set, and
    give it the config's ``[kafka]`` connection keys (``AGENTD_KAFKA_CLIENT``: TLS, SASL),
    as the daemon gives its own instances, so a client reaches a secured cluster too.

    Without a config the App's own ``broker=`` is used, exactly as in the app's code.
    """
    if config is None:
        return
    if not os.environ.get("AGENTD_BROKER"):
        os.environ["AGENTD_BROKER"] = daemon_broker(config)
    if not os.environ.get("AGENTD_KAFKA_CLIENT"):
        from supervisor.daemon.topics import connection_settings

        client = connection_settings("", config.kafka)
        del client["bootstrap.servers"]
        os.environ["AGENTD_KAFKA_CLIENT"] = json.dumps(client)


def find_agent(apps: Sequence[Any], name: str) -> Any:
    """The agent called ``name`` (full ``module.function`` or unique last part)."""
    agents = {agent_name: agent for app in apps for agent_name, agent in app.agents.items()}
    if name in agents:
        return agents[name]
    short = [full for full in agents if full.rsplit(".", 1)[-1] == name]
    if len(short) == 1:
        return agents[short[0]]
    if short:
        raise ClientError(f"agent name {name!r} is ambiguous: {', '.join(sorted(short))}", 2)
    shorts = [full.rsplit(".", 1)[-1] for full in agents]
    known = ", ".join(sorted(agents)) or "none"
    raise ClientError(f"no agent {name!r} in the app{did_you_mean(name, [*agents, *shorts])} "
                      f"(agents: {known})", 2)


def resolve_target(apps: Sequence[Any], name: str) -> tuple[Any | None, Any]:
    """``send``'s AGENT|TOPIC: ``(agent, its topic)`` for an agent name, else
    ``(None, topic)``. An agent's input topic keeps its value type; another topic is
    sent with the app's default serializers, and only if it exists in Kafka, so a
    mistyped agent name is an error with a did-you-mean, never a new topic."""
    try:
        agent = find_agent(apps, name)
        return agent, agent.channel
    except ClientError as unknown_agent:
        for app in apps:
            for agent in app.agents.values():
                if getattr(agent.channel, "topics", ())[:1] == (name,):
                    return None, agent.channel
        if name not in kafka_topics(apps[0]):
            raise ClientError(f"{unknown_agent} and no topic {name!r} exists", 2) from None
    return None, apps[0].topic(name)


class _Quiet:
    """librdkafka's log lines, dropped: while Kafka is unreachable it prints one every
    ~50 ms; the one-line ``ClientError`` says it once."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        pass


def kafka_topics(app: Any, timeout: float = 10.0) -> set[str]:
    """The topics Kafka has (a metadata request for all topics: asking for one topic by
    name could auto-create it). Asked before sending too, so an unreachable broker is
    one line and exit 1, not a producer retrying for the whole delivery timeout."""
    from confluent_kafka.admin import AdminClient

    from agentlib.kafka import bootstrap_servers, client_settings, note_cluster

    bootstrap = bootstrap_servers(app.broker)
    conf: dict[str, Any] = {**client_settings(), "bootstrap.servers": bootstrap,
                            "logger": _Quiet()}
    try:
        metadata = AdminClient(conf).list_topics(timeout=timeout)
    except Exception as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(error)
        raise ClientError(f"cannot reach Kafka at {bootstrap}: {reason}") from None
    note_cluster(bootstrap, metadata.cluster_id)  # the embedded broker: see note_cluster
    return set(metadata.topics)


def parse_value(text: str, value_type: Any) -> Any:
    """VALUE as JSON, built into the agent's ``value_type`` when it is a Record, so
    a value the agent could not decode is refused here, before it reaches Kafka."""
    from agentlib.records import Record

    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise ClientError(f"VALUE is not JSON ({exc}); quote strings: '\"text\"'", 2) from None
    if isinstance(value_type, type) and issubclass(value_type, Record):
        if not isinstance(payload, dict):
            raise ClientError(f"VALUE must be a JSON object for {value_type.__name__}", 2)
        try:
            return value_type.from_data(payload)
        except Exception as exc:
            raise ClientError(f"VALUE does not fit {value_type.__name__}: {exc}", 2) from None
    return payload


def send(apps: Sequence[Any], target: str, value_text: str, key: str | None,
         partition: int | None) -> Any:
    """Produce VALUE to an agent's topic (or any topic); the delivery's metadata."""
    agent, topic = resolve_target(apps, target)
    value = parse_value(value_text, topic.value_type)
    kafka_topics(apps[0])  # reachable? else one line now, not a 30 s delivery wait
    app = (agent or topic).app
    work = agent.send(key=key, value=value, partition=partition) if agent is not None \
        else topic.send(key=key, value=value, partition=partition)
    return _run(app, work, timeout=30.0, what=f"delivery to {topic.get_topic_name()}")


def ask(apps: Sequence[Any], agent_name: str, value_text: str, key: str | None,
        timeout: float) -> Any:
    """Send VALUE to the agent and return the first value it yields for it."""
    agent = find_agent(apps, agent_name)
    value = parse_value(value_text, agent.channel.value_type)
    kafka_topics(agent.app)  # reachable? else one line now, not a 30 s wait
    return _run(agent.app, agent.ask(value, key=key), timeout=timeout,
                what=f"reply from {agent.name} (is agentd running it?)")


def _run(app: Any, work: Any, timeout: float, what: str) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(work, timeout)

    try:
        return asyncio.run(app.run_client(bounded()))
    except TimeoutError:
        raise ClientError(f"no {what} within {timeout:g}s") from None
    except ClientError:
        raise
    except Exception as exc:
        raise ClientError(f"{type(exc).__name__}: {exc}") from exc


def to_json(value: Any) -> str:
    """A reply as one line of JSON (Records as their fields, as Faust encodes them)."""
    from agentlib import codecs

    return codecs.json_dumps(value).decode()


# ---------------------------------------------------------------- check


def check(config_path: str) -> list[str]:
    """Validate the config and import its app in a throw-away zygote; the report lines.

    Raises ``ClientError`` (exit 2) naming the key, as ``agentd start`` would fail.
    """
    from supervisor.config.kafkaprops import validate_kafka
    from supervisor.daemon.fleet import changelogs_of, declared_partitions
    from supervisor.daemon.zygote import Zygote, ZygoteError

    try:
        config = load_config(config_path)
        validate_kafka(config.kafka)  # as the daemon's consumer will, when built
    except ConfigError as exc:
        raise ClientError(f"config error: {exc}", 2) from None
    if config.metrics.port is not None and importlib.util.find_spec("prometheus_client") is None:
        # `agentd start` refuses this (MetricsServer); check must not pass what start refuses.
        raise ClientError("config error: metrics.port: needs prometheus-client: "
                          "pip install 'agentd[metrics]'", 2)
    env = {**os.environ, "AGENTD_BROKER": config.bootstrap_servers or "127.0.0.1:9",
           "AGENTD_LOG_LEVEL": "WARNING"}
    try:
        zygote = Zygote.start(list(config.app), env)
    except ZygoteError as exc:
        raise ClientError(f"config error: app: {exc}", 2) from None
    try:
        try:
            config = validate_agent_names(config, [a.name for a in zygote.agents])
        except ConfigError as exc:
            raise ClientError(f"config error: {exc}", 2) from None
        if not zygote.agents:
            raise ClientError(f"config error: app: {' '.join(config.app)} defines no agents", 2)
        lines = [f"{config_path}: ok",
                 f"  app {' '.join(config.app)}, broker {config.broker}, "
                 f"group {config.group_id or zygote.app_ids[0]}",
                 f"  state_dir {config.state_dir}"]
        for spec in zygote.agents:
            agent = config.agent(spec.name)
            count = agent.instances or spec.concurrency
            lines.append(f"  agent {spec.name}: {count} instance{'s' if count != 1 else ''}, "
                         f"ordering {agent.ordering}, on_error {agent.on_error}, "
                         f"topics {', '.join(spec.topics)}")
        try:
            declared = declared_partitions(zygote.agents)
            for spec in zygote.agents:  # a table needs ordering = "partition", as at start
                changelogs_of(spec, config.agent(spec.name).ordering, declared)
                lines += [f"  table {t['name']}{' (global)' if t.get('global') else ''}: "
                          f"used by {spec.name}, changelog {t['changelog']}"
                          for t in spec.tables]
        except ConfigError as exc:
            raise ClientError(f"config error: {exc}", 2) from None
        if declared:
            lines.append(check_partitions(config, declared))
        return lines
    finally:
        zygote.stop()


def check_partitions(config: Config, declared: dict[str, int], timeout: float = 3.0) -> str:
    """Compare the declared partition counts with the topics Kafka already has, as
    ``agentd start`` does: a report line, or ``ClientError`` (exit 2) for a topic that
    exists with another count. An unreachable Kafka is reported, not an error: the
    config may be checked where the cluster is not reachable."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from supervisor.daemon.topics import TopicMismatch, compare_partitions, connection_settings
    from supervisor.devbrokers.embedded import is_mock_cluster

    what = f"topics: {len(declared)} with declared partition counts"
    if config.bootstrap_servers is None:
        return f"  {what}, created with them at start (embedded broker)"
    conf = {**connection_settings(config.bootstrap_servers, config.kafka), "logger": _Quiet()}
    try:
        metadata = AdminClient(conf).list_topics(timeout=timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(error)
        return f"  {what}, not compared with Kafka (cannot reach {config.broker}: {reason})"
    try:
        compare_partitions({name: len(topic.partitions)
                            for name, topic in metadata.topics.items()}, declared)
    except TopicMismatch as exc:
        raise ClientError(str(exc), 2) from None
    if is_mock_cluster(metadata.cluster_id):
        return f"  {what}; Kafka is the mock cluster: missing ones auto-create with 4 partitions"
    return f"  {what}: none exists in Kafka with another count"
