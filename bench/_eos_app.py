"""The agentd side of ``bench/eos.py``: forward each value to a sink topic.

Loaded by ``agentd start`` as ``app = "_eos_app:app"`` with ``bench/`` on PYTHONPATH.
The same step as the ``quix_eos`` contestant of ``_contestants.py``: decode the JSON
value, yield it to the agent's topic sink, which encodes and produces it (through the
instance's transactional producer under ``processing_guarantee = "exactly_once"``).
From the environment, as ``_agentd_app``: ``BENCH_TOPIC``, ``BENCH_SINK``,
``BENCH_APP_ID``, ``BENCH_INSTANCES`` (the agent's ``concurrency``) and
``BENCH_MARK_DIR`` (each instance's first-message time).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from _common import mark_first

import agentlib as faust

TOPIC = os.environ.get("BENCH_TOPIC", "bench-input")
SINK = os.environ.get("BENCH_SINK", "bench-output")
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "1"))
MARK_DIR = os.environ.get("BENCH_MARK_DIR", "")

app = faust.App(os.environ.get("BENCH_APP_ID", "bench-eos"), value_serializer="json")
source = app.topic(TOPIC)
sink = app.topic(SINK)


@app.agent(source, concurrency=INSTANCES, sink=[sink])
async def forward(stream: Any) -> AsyncIterator[Any]:
    first = True
    async for value in stream:
        if first:
            mark_first(MARK_DIR)
            first = False
        yield value
