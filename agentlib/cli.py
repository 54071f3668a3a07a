"""``agentlib.cli``: ``argument``/``option`` for ``@app.command``, and the app's CLI.

They are click's decorators under Faust's names, so ``from faust.cli import argument,
option`` becomes ``from agentlib.cli import argument, option`` unchanged. Commands
run as clients: no agent starts; ``ask``/``cast`` use the producer and the reply
consumer, which are closed when the command returns.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import click

from agentlib.apptype import AppT

__all__ = ["Command", "argument", "build_group", "make_command", "option"]


def argument(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """A positional command-line argument (``click.argument``).

    Accepts ``help=`` as the guide writes it (``argument('a', type=int, help=...)``),
    which click's arguments reject (they have no help text): it is dropped.
    """
    kwargs.pop("help", None)
    return click.argument(*args, **kwargs)


def option(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """A command-line option such as ``--print/--no-print`` (``click.option``)."""
    return click.option(*args, **kwargs)


class Command:
    """What a command function whose first parameter is ``self`` receives, as in Faust.

    Faust makes such a function a method of its command class; the parts command code
    uses are here: ``app``, ``say`` (stdout) and ``carp`` (stderr).
    """

    def __init__(self, app: AppT, name: str) -> None:
        self.app = app
        self.name = name

    def say(self, message: Any) -> None:
        """Print ``message`` to stdout."""
        click.echo(message)

    def carp(self, message: Any) -> None:
        """Print ``message`` to stderr."""
        click.echo(message, err=True)


def make_command(app: AppT, fun: Callable[..., Any], options: Sequence[Callable[[Any], Any]],
                 name: str | None = None) -> click.Command:
    """A click command running ``fun`` (sync or async) as a client of ``app``.

    A first parameter named ``self`` gets a :class:`Command`; the others are the
    command line's arguments and options by name.
    """
    command_name = name or fun.__name__
    takes_self = next(iter(inspect.signature(fun).parameters), None) == "self"

    def run(**kwargs: Any) -> Any:
        result = fun(Command(app, command_name), **kwargs) if takes_self else fun(**kwargs)
        if inspect.isawaitable(result):
            return asyncio.run(app.run_client(result))
        return result

    functools.update_wrapper(run, fun)
    command: Any = run
    for decorate in reversed(options):
        command = decorate(command)
    return click.command(name=command_name, help=inspect.getdoc(fun))(command)


def build_group(app: AppT) -> click.Group:
    """The click group ``app.main()`` runs: one subcommand per ``@app.command``."""
    group = click.Group(name=app.id, help=f"Commands of the {app.id!r} agentlib app.")
    for command in app.commands.values():
        group.add_command(command)
    return group
