"""``python -m supervisor`` is the ``agentd`` command (as ``python -m supervisor.cli``)."""

from supervisor.cli.commands import main

main(prog_name="agentd")
