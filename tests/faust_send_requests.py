"""Faust's own request bytes: ``agent.send(..., reply_to=, correlation_id=)`` by faust-streaming.

Run as ``python faust_send_requests.py BROKER HEADERS_TOPIC ENVELOPE_TOPIC``: sends
``Add(a=4, b=8)`` with key ``b"k"``, reply-to ``f-reply-fixed`` and correlation id
``cid-1`` through an agent with reply headers (Faust's default) and one with
``use_reply_headers=False`` (the ``@ReqRepRequest`` envelope), then exits hard
(Faust clients can hang on shutdown).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterable

import faust


class Add(faust.Record, namespace="examples.agent.Add"):
    a: int
    b: int


broker, headers_topic, envelope_topic = sys.argv[1:4]
app = faust.App("faust-requests", broker=broker, web_enabled=False,
                topic_replication_factor=1, topic_partitions=1)


@app.agent(app.topic(headers_topic, value_type=Add))
async def with_headers(stream: faust.StreamT[Add]) -> AsyncIterable[int]:
    async for value in stream:
        yield value.a + value.b


@app.agent(app.topic(envelope_topic, value_type=Add), use_reply_headers=False)
async def with_envelope(stream: faust.StreamT[Add]) -> AsyncIterable[int]:
    async for value in stream:
        yield value.a + value.b


async def main() -> None:
    for agent in (with_headers, with_envelope):
        delivery = await agent.send(key=b"k", value=Add(a=4, b=8), reply_to="f-reply-fixed",
                                    correlation_id="cid-1")
        await delivery
    await app.producer.flush()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 60))
    sys.stdout.flush()
    os._exit(0)
