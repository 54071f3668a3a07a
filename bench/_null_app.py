"""The null agent of ``bench/ceiling.py``: take each record, do nothing, let it be acked.

Loaded by ``agentd start`` as ``app = "_null_app:app"`` with ``bench/`` on PYTHONPATH;
``BENCH_TOPIC`` is the input topic, ``BENCH_INSTANCES`` the instance count,
``BENCH_APP_ID`` the app id.

The cheapest agent the agentlib API allows: the value codec is ``raw`` (the bytes as
they are, no JSON), there is no value type and no sink, and the body does nothing, so
an event is done as soon as the stream moves to the next one. The worker itself
(``supervisor/instance/worker.py``) still reads every ``RECORD`` out of the ring into
a ``RawRecord`` and agentlib still makes an ``Event`` and a ticket for it: there is no
way to ack a ring record without that short of changing the worker, which this bench
leaves alone (it measures the supervisor, whose work does not depend on the agent).
"""

from __future__ import annotations

import os
from typing import Any

import agentlib as faust

TOPIC = os.environ.get("BENCH_TOPIC", "bench-input")
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "1"))

app = faust.App(os.environ.get("BENCH_APP_ID", "bench-null"), value_serializer="raw")
source = app.topic(TOPIC, value_serializer="raw")


@app.agent(source, concurrency=INSTANCES)
async def null(stream: Any) -> None:
    async for _event in stream:
        pass
