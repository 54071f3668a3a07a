"""``python -m supervisor.cli`` is the ``agentd`` command."""

from supervisor.cli.commands import main

main(prog_name="agentd")
