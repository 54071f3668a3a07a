"""The source of the agent module a test writes next to its config for ``agentd start``.

The end-to-end tests mostly run one agent that reads raw values from ``$IN_TOPIC`` and
yields to ``$SINK_TOPIC``; they differ in the app's id, the agent's name and what it
does with each value. :func:`agent_module` writes that module; a test names only what
is its own.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence


def agent_module(app_id: str, agent: str, body: str = "yield value", *,
                 imports: Sequence[str] = (), module: str = "", start: str = "",
                 keyed: bool = True) -> str:
    """A module with ``app = faust.App(app_id)``, raw ``source`` (``$IN_TOPIC``) and
    ``sink`` (``$SINK_TOPIC``) topics and one agent named ``agent`` from one to the
    other, which runs ``start`` once and then ``body`` for each ``value`` of its stream.

    ``imports``: more modules to import (``os`` and ``agentlib as faust`` always are);
    ``module``: module-level lines after the topics (constants, state);
    ``keyed``: the topics' keys are bytes too (else only values are typed).
    ``body``, ``start`` and ``module`` are Python text, indented as one likes.
    """
    types = "key_type=bytes, value_type=bytes" if keyed else "value_type=bytes"
    lines = ["import os", *(f"import {name}" for name in imports),
             "import agentlib as faust", "",
             f'app = faust.App("{app_id}")',
             f'source = app.topic(os.environ["IN_TOPIC"], {types}, value_serializer="raw")',
             f'sink = app.topic(os.environ["SINK_TOPIC"], {types}, value_serializer="raw")']
    if module:
        lines.append(_block(module, 0))
    lines += ["", "", "@app.agent(source, sink=[sink])", f"async def {agent}(stream):"]
    if start:
        lines.append(_block(start, 4))
    lines += ["    async for value in stream:", _block(body, 8)]
    return "\n".join(lines) + "\n"


def _block(text: str, indent: int) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * indent)
