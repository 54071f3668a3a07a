"""The ``agentd`` command line: daemon commands, client commands, app commands.

``agentd = supervisor.cli:main`` is the installed entry point; the commands live in
:mod:`supervisor.cli.commands`.
"""

from supervisor.cli.commands import main

__all__ = ["main"]
