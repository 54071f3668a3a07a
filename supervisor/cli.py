"""The ``agentd`` command line.

One small function per command; each imports what it needs lazily so that
``agentd --help`` stays fast and a broken optional piece cannot break the others.
Errors a user can fix are one line on stderr and a non-zero exit (``click`` usage
errors exit 2); a traceback only with ``--debug``.
"""

from __future__ import annotations

import sys

import click

from supervisor import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentd")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """agentd: run Faust-style agents on every core, committing only what was processed."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _fail(ctx: click.Context, message: str, code: int) -> None:
    """One line on stderr and exit ``code``; the traceback only with ``--debug``."""
    if ctx.find_root().obj.get("debug"):
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
    from supervisor import brokerserve, devbroker

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
    on_error=crash fired, 2 for a config error.
    """
    import logging

    from supervisor.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail(ctx, f"config error: {exc}", 2)
        return
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    from supervisor.control import ControlError
    from supervisor.daemon import Supervisor
    from supervisor.topics import BrokerUnreachable
    from supervisor.zygote import ZygoteError

    try:
        code = Supervisor(config).run()
    except ConfigError as exc:  # agent tables checked against the imported app
        _fail(ctx, f"config error: {exc}", 2)
        return
    except (ZygoteError, ControlError, BrokerUnreachable) as exc:
        _fail(ctx, str(exc), 1)
        return
    ctx.exit(code)
