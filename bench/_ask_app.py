"""The ask bench's agent, written once for both runtimes: ``adding`` answers ``a + b``.

``BENCH_ASK_LIB`` picks the library: ``agentlib`` (run by ``agentd start`` as
``app = "_ask_app:app"``, and agentd's client) or ``faust`` (faust-streaming worker and
client). ``BENCH_TOPIC`` is the request topic, ``BENCH_APP_ID`` the app id; the broker
comes from ``AGENTD_BROKER`` for agentlib and from ``BENCH_BROKER`` for Faust.
``BENCH_ASK_TABLE=1`` (agentlib): the agent also counts each request in a table, for the
ask latency of a table-writing agent (its changelog write holds the record's commit,
not the answer).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

LIB = os.environ.get("BENCH_ASK_LIB", "agentlib")
faust: Any = importlib.import_module(LIB)

_options: dict[str, Any] = {"value_serializer": "json"}
if LIB == "faust":
    _options.update(broker=f"kafka://{os.environ.get('BENCH_BROKER', 'localhost:9092')}",
                    web_enabled=False, reply_create_topic=True,
                    consumer_auto_offset_reset="earliest", topic_partitions=8,
                    datadir=tempfile.mkdtemp(prefix="bench-faust-ask-"))
app = faust.App(os.environ.get("BENCH_APP_ID", "bench-ask"), **_options)


class Add(faust.Record, serializer="json"):  # type: ignore[misc]
    a: int
    b: int


topic = app.topic(os.environ.get("BENCH_TOPIC", "bench-ask"), value_type=Add)
asked: Any = None
if LIB == "agentlib" and os.environ.get("BENCH_ASK_TABLE"):
    asked = app.Table("asked", default=int)


@app.agent(topic)
async def adding(stream: Any) -> AsyncIterator[int]:
    async for value in stream:
        if asked is not None:
            asked[stream.current_event.key] += 1
        yield value.a + value.b
