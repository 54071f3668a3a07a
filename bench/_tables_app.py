"""The agentd side of ``bench/tables.py``: count records per key in a table.

Loaded by ``agentd start`` as ``app = "_tables_app:app"`` with ``bench/`` on PYTHONPATH.
The same step as the Faust and Quix contestants of ``_contestants.py``: decode the
JSON value, add one to the record key's row. ``counts[event.key]`` is the record's own
key, so the write is co-partitioned (docs/tables.md); the table's store is agentd's
default, RocksDB under the run's ``table_dir``. From the environment, as
``_agentd_app``: ``BENCH_TOPIC``, ``BENCH_APP_ID``, ``BENCH_INSTANCES`` (the agent's
``concurrency``) and ``BENCH_MARK_DIR`` (each instance's first-message time).
"""

from __future__ import annotations

import os
from typing import Any

from _common import mark_first

import agentlib as faust

TOPIC = os.environ.get("BENCH_TOPIC", "bench-input")
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "1"))
MARK_DIR = os.environ.get("BENCH_MARK_DIR", "")
TABLE = "counts"

app = faust.App(os.environ.get("BENCH_APP_ID", "bench-tables"), value_serializer="json")
source = app.topic(TOPIC)
counts = app.Table(TABLE, default=int)


@app.agent(source, concurrency=INSTANCES)
async def count(stream: Any) -> None:
    first = True
    async for event in stream.events():
        if first:
            mark_first(MARK_DIR)
            first = False
        counts[event.key] += 1
