"""The ``agentd`` command line.

One small function per command; each imports what it needs lazily so that
``agentd --help`` stays fast and a broken optional piece cannot break the others.
Errors a user can fix are one line on stderr and a non-zero exit (``click`` usage
errors exit 2); a traceback only with ``--debug``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from supervisor import __version__


class AgentdGroup(click.Group):
    """agentd's own commands, then the ``@app.command``s of the app named by ``-A``
    (or the config's ``app``): ``agentd -A examples.agent send_value 4 8 --print``."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or not (ctx.params.get("app") or ctx.params.get("config_path")):
            return command
        return _app_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        if ctx.params.get("app"):
            from supervisor.cli import appcmds
            from supervisor.cli.clientcmds import ClientError

            try:
                apps = appcmds.load_apps([ctx.params["app"]])
            except ClientError:
                return names  # `agentd -A broken --help` still shows agentd's own help
            names += sorted({name for app in apps for name in app.commands} - set(names))
        return names


@click.group(cls=AgentdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentd")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-c", "--config", "config_path", envvar="AGENTD_CONFIG", metavar="CONFIG",
              type=click.Path(dir_okay=False),
              help="Config of the daemon to talk to (its state_dir and broker). "
                   "Env: AGENTD_CONFIG.")
@click.option("-A", "--app", "app", metavar="MODULE[:ATTR]", is_eager=True,  # before --help
              help="The agentlib app for send/ask and app commands (default: the config's).")
@click.pass_context
def main(ctx: click.Context, debug: bool, config_path: str | None, app: str | None) -> None:
    """agentd: run Faust-style agents on every core, committing only what was processed.

    \b
    Shell completion (bash; for zsh/fish use zsh_source/fish_source):
        eval "$(_AGENTD_COMPLETE=bash_source agentd)"
    """
    ctx.ensure_object(dict)
    ctx.obj.update(debug=debug, config_path=config_path, app=app)


def _fail(ctx: click.Context, message: str, code: int) -> None:
    """One line on stderr and exit ``code``; the traceback only with ``--debug``."""
    root = ctx.find_root()
    if (root.obj or {}).get("debug") or root.params.get("debug"):
        raise
    click.echo(f"agentd {ctx.info_name}: {message}", err=True)
    ctx.exit(code)


def _topic_spec(ctx: click.Context, param: click.Parameter,
                value: tuple[str, ...]) -> dict[str, int]:
    """``--topic NAME[:PARTITIONS]`` values as ``{name: partitions}``."""
    topics: dict[str, int] = {}
    for spec in value:
        name, _, count = spec.partition(":")
        if not name or (count and (not count.isdigit() or int(count) < 1)):
            raise click.BadParameter(f"{spec!r} is not NAME or NAME:PARTITIONS")
        topics[name] = int(count) if count else 0
    return topics


@main.command("dev-broker", short_help="Run a local Kafka (real, or --embedded) for development.")
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Partitions of auto-created topics (default 8; the embedded broker: 4, fixed).")
@click.option("--topic", "topics", multiple=True, callback=_topic_spec, metavar="NAME[:N]",
              help="Create this topic at start (N partitions, default --partitions). Repeatable.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Client port on 127.0.0.1 (default: a free one).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the Kafka log here across restarts (formatted once, never deleted).")
@click.option("--embedded", is_flag=True,
              help="Serve librdkafka's in-memory mock cluster (no Java; not for production).")
@click.pass_context
def dev_broker(ctx: click.Context, partitions: int | None, topics: dict[str, int],
               port: int | None, data_dir: str | None, embedded: bool) -> None:
    """Run a single-node Kafka on loopback; print `bootstrap=127.0.0.1:PORT`; stop on Ctrl-C.

    The real broker is Apache Kafka 4.x (KRaft), jars fetched once from Maven Central
    (Java 17 and Maven needed). --embedded keeps everything in memory in this process.
    """
    from supervisor.devbrokers import devbroker
    from supervisor.devbrokers import serve as brokerserve

    try:
        if embedded:
            brokerserve.serve_embedded(topics, partitions=partitions, port=port,
                                       data_dir=data_dir)
        else:
            brokerserve.serve_kafka(topics, partitions=partitions or 8, port=port,
                                  data_dir=data_dir)
    except devbroker.ToolMissing as exc:
        _fail(ctx, str(exc), 2)
    except devbroker.UsageProblem as exc:
        raise click.UsageError(str(exc)) from None
    except devbroker.DevBrokerError as exc:
        _fail(ctx, str(exc), 1)


@main.command("start")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.pass_context
def start(ctx: click.Context, config_path: str) -> None:
    """Run the agents of CONFIG in the foreground until SIGTERM/SIGINT; logs on stderr.

    Exit 0 after a clean drain, 1 when the app cannot start or an agent's
    on_error=crash fired, 2 for a config error (an unknown [kafka] property, a topic
    whose partition count in Kafka differs from the app's partitions=, included).
    """
    import logging

    from supervisor.config.kafkaprops import validate_kafka
    from supervisor.config.loader import ConfigError, load_config

    try:
        config = load_config(config_path)
        validate_kafka(config.kafka)
    except ConfigError as exc:
        _fail(ctx, f"config error: {exc}", 2)
        return
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    from supervisor.daemon.lifecycle import StartupError
    from supervisor.daemon.ops.control import ControlError
    from supervisor.daemon.supervisor import Supervisor
    from supervisor.daemon.topics import BrokerUnreachable, TopicMismatch
    from supervisor.daemon.zygote import ZygoteError

    daemon = Supervisor(config)
    try:
        code = daemon.run()
    except ConfigError as exc:  # agent tables checked against the imported app
        _fail(ctx, f"config error: {exc}", 2)
        return
    except TopicMismatch as exc:
        _fail(ctx, str(exc), 2)
        return
    except (ZygoteError, ControlError, BrokerUnreachable, StartupError) as exc:
        _fail(ctx, str(exc), 1)
        return
    ctx.exit(code)


# ---------------------------------------------------------------- client commands


def _remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().obj["config_path"] = value


# `-c` after the command name too (`agentd status -c /etc/agentd/agentd.toml`).
_config_option = click.option(
    "-c", "--config", "config_path", metavar="CONFIG", type=click.Path(dir_okay=False),
    expose_value=False, callback=_remember_config,
    help="Config of the daemon to talk to (env AGENTD_CONFIG).")


def _client_config(ctx: click.Context) -> Any:
    """The ``-c``/``AGENTD_CONFIG`` config (``ClientError`` when missing or bad)."""
    from supervisor.cli.clientcmds import load_client_config

    return load_client_config(ctx.find_root().obj.get("config_path"))


def _optional_config(ctx: click.Context) -> Any:
    path = ctx.find_root().obj.get("config_path")
    return _client_config(ctx) if path else None


@main.command("check")
@click.argument("config_path", metavar="[CONFIG]", required=False,
                type=click.Path(dir_okay=False))
@click.pass_context
def check(ctx: click.Context, config_path: str | None) -> None:
    """Validate CONFIG and import its app in a throw-away process; list its agents.

    [kafka] is checked by librdkafka itself (no connection). Declared partition counts
    are compared with the topics Kafka has, when it answers. Exit 0 when `agentd
    start` would accept it, 2 (one line naming the key or topic) when not.
    """
    from supervisor.cli import appcmds
    from supervisor.cli.clientcmds import ClientError

    try:
        path = config_path or ctx.find_root().obj.get("config_path")
        if not path:
            raise ClientError("give CONFIG (or -c CONFIG / AGENTD_CONFIG)", 2)
        click.echo("\n".join(appcmds.check(path)))
    except ClientError as exc:
        _fail(ctx, str(exc), exc.exit_code)


@main.command("status")
@_config_option
@click.option("--json", "as_json", is_flag=True,
              help="The stable JSON document (schema in docs/operations.md).")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the running daemon: agents, instances, partitions, lag, tables, reload state.

    Exit 0 when it answers, 3 when it is not running.
    """
    import json

    from supervisor.cli.clientcmds import ClientError, format_status, send_command

    try:
        doc = send_command(_client_config(ctx), "status")
    except ClientError as exc:
        _fail(ctx, str(exc), exc.exit_code)
        return
    click.echo(json.dumps(doc, indent=2, sort_keys=True) if as_json else format_status(doc))


@main.command("reload")
@_config_option
@click.option("--wait/--no-wait", default=False, show_default=True,
              help="Wait for the outcome; exit 1 if the new code or config was refused.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0,
              show_default=True, help="Seconds to wait with --wait.")
@click.pass_context
def reload(ctx: click.Context, wait: bool, timeout: float) -> None:
    """Reload the app's code and config in the running daemon (same as SIGHUP)."""
    from supervisor.cli.clientcmds import ClientError, reload_daemon

    try:
        click.echo(reload_daemon(_client_config(ctx), wait, timeout))
    except ClientError as exc:
        _fail(ctx, str(exc), exc.exit_code)


@main.command("stop")
@_config_option
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return only once the daemon has drained and exited.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds to wait (default: the config's shutdown_timeout + 30).")
@click.pass_context
def stop(ctx: click.Context, wait: bool, timeout: float | None) -> None:
    """Stop the running daemon gracefully (same as SIGTERM): drain, commit, exit."""
    from supervisor.cli.clientcmds import ClientError, stop_daemon

    try:
        config = _client_config(ctx)
        stop_daemon(config, wait, timeout or config.shutdown_timeout + 30)
    except ClientError as exc:
        _fail(ctx, str(exc), exc.exit_code)
        return
    click.echo("stopped" if wait else "stop requested")


@main.command("send")
@_config_option
@click.argument("target", metavar="AGENT|TOPIC")
@click.argument("value", metavar="VALUE")
@click.option("--key", "-k", default=None, help="Message key (a string).")
@click.option("--partition", "-p", type=click.IntRange(min=0), default=None,
              help="Partition (default: by key, as the producer chooses).")
@click.pass_context
def send(ctx: click.Context, target: str, value: str, key: str | None,
         partition: int | None) -> None:
    """Send VALUE (JSON, encoded with the agent's value type) to an agent or topic.

    Prints where it landed: topic[partition]@offset.
    """
    from supervisor.cli import appcmds
    from supervisor.cli.clientcmds import ClientError

    try:
        config = _optional_config(ctx)
        apps = appcmds.load_apps(appcmds.app_specs(ctx.find_root().obj.get("app"), config))
        appcmds.use_daemon_broker(config)
        meta = appcmds.send(apps, target, value, key, partition)
    except ClientError as exc:
        _fail(ctx, str(exc), exc.exit_code)
        return
    click.echo(f"{meta.topic}[{meta.partition}]@{meta.offset}")


@main.command("ask")
@_config_option
@click.argument("agent", metavar="AGENT")
@click.argument("value", metavar="VALUE")
@click.option("--key", "-k", default=None, help="Message key (a string).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds to wait for the reply.")
@click.pass_context
def ask(ctx: click.Context, agent: str, value: str, key: str | None, timeout: float) -> None:
    """Send VALUE (JSON) to AGENT and print the first value it yields for it (JSON)."""
    from supervisor.cli import appcmds
    from supervisor.cli.clientcmds import ClientError

    try:
        config = _optional_config(ctx)
        apps = appcmds.load_apps(appcmds.app_specs(ctx.find_root().obj.get("app"), config))
        appcmds.use_daemon_broker(config)
        reply = appcmds.ask(apps, agent, value, key, timeout)
    except ClientError as exc:
        _fail(ctx, str(exc), exc.exit_code)
        return
    click.echo(appcmds.to_json(reply))


def _app_command(ctx: click.Context, name: str) -> click.Command | None:
    """``@app.command`` ``name`` wrapped so its errors are one line (``--debug``: all)."""
    from supervisor.cli import appcmds
    from supervisor.cli.clientcmds import ClientError, load_client_config

    try:
        config_path = ctx.params.get("config_path")
        config = load_client_config(config_path) if config_path else None
        apps = appcmds.load_apps(appcmds.app_specs(ctx.params.get("app"), config))
        command = next((app.commands[name] for app in apps if name in app.commands), None)
        if command is not None:
            appcmds.use_daemon_broker(config)
    except ClientError as exc:
        if ctx.params.get("debug"):
            raise
        click.echo(f"agentd: {exc}", err=True)
        ctx.exit(exc.exit_code)
    if command is None or command.callback is None:
        return None
    original = command.callback

    def run(**kwargs: Any) -> Any:
        try:
            return original(**kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # the command's own exit code or usage error: click reports it
        except Exception as exc:
            _fail(click.get_current_context(), f"{type(exc).__name__}: {exc}", 1)

    return click.Command(name, params=command.params, callback=run, help=command.help,
                         short_help=command.short_help)
