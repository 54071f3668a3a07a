"""A real faust-streaming app: the foreign peer agentlib must interoperate with.

Run only as a subprocess by ``faustpeer.FaustWorker`` (``faust -A faust_peer_app
worker``); configured through the environment so one module serves every test:
``FAUST_PEER_BROKER`` (kafka://h:p), ``FAUST_PEER_APP`` (app id = consumer group),
``FAUST_PEER_TOPIC`` (the ``adding`` agent's topic), ``FAUST_PEER_DATADIR``.

The records carry the namespaces of ``examples.agent`` so that the same JSON means
the same thing to both libraries.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable

import faust


class Add(faust.Record, namespace="examples.agent.Add"):
    a: int
    b: int


app = faust.App(
    os.environ.get("FAUST_PEER_APP", "faust-peer"),
    broker=os.environ.get("FAUST_PEER_BROKER", "kafka://localhost:9092"),
    datadir=os.environ.get("FAUST_PEER_DATADIR", "/tmp/faust-peer"),
    web_enabled=False,
    topic_replication_factor=1,
    topic_partitions=1,
    consumer_auto_offset_reset="earliest",
)
topic = app.topic(os.environ.get("FAUST_PEER_TOPIC", "adding"), value_type=Add)


@app.agent(topic)
async def adding(stream: faust.StreamT[Add]) -> AsyncIterable[int]:
    async for value in stream:
        yield value.a + value.b
