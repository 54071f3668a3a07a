"""The ``agentd`` command line.

One small function per command; each imports what it needs lazily so that
``agentd --help`` stays fast and a broken optional piece cannot break the others.
Errors a user can fix are one line on stderr and a non-zero exit (``click`` usage
errors exit 2); a traceback only with ``--debug``.
"""

from __future__ import annotations

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


@main.command("dev-broker")
@click.option("--partitions", type=click.IntRange(min=1), default=8, show_default=True,
              help="Partitions of auto-created topics.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Client port on 127.0.0.1 (default: a free one).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the Kafka log here across restarts (formatted once, never deleted).")
@click.option("--embedded", is_flag=True,
              help="Serve librdkafka's in-memory mock cluster (no Java; not for production).")
@click.pass_context
def dev_broker(ctx: click.Context, partitions: int, port: int | None, data_dir: str | None,
               embedded: bool) -> None:
    """Run a single-node Kafka on loopback; print `bootstrap=127.0.0.1:PORT`; stop on Ctrl-C.

    The real broker is Apache Kafka 4.x (KRaft), jars fetched once from Maven Central.
    """
    from supervisor import devbroker

    try:
        if embedded:
            if port is not None or data_dir is not None:
                raise click.UsageError("--port and --data-dir do not apply to --embedded")
            from supervisor.embedded import EmbeddedBroker

            mock = EmbeddedBroker(default_partitions=partitions)
            devbroker.serve_until_signalled(lambda: mock.bootstrap, mock.close, lambda: True)
        else:
            broker = devbroker.DevBroker(partitions=partitions, port=port, data_dir=data_dir)
            devbroker.serve_until_signalled(
                broker.start, broker.stop,
                lambda: broker.process is not None and broker.process.poll() is None)
    except devbroker.ToolMissing as exc:
        _fail(ctx, str(exc), 2)
    except devbroker.DevBrokerError as exc:
        _fail(ctx, str(exc), 1)
