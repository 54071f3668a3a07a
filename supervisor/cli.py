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
