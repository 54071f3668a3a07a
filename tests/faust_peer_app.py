"""A real faust-streaming app: the foreign peer agentlib must interoperate with.

Run only as a subprocess by ``faustpeer.FaustWorker`` (``faust -A faust_peer_app
worker``); configured through the environment so one module serves every test:
``FAUST_PEER_BROKER`` (kafka://h:p), ``FAUST_PEER_APP`` (app id = consumer group),
``FAUST_PEER_DATADIR``, and the topics of its agents: ``FAUST_PEER_ADDING``,
``FAUST_PEER_POW2``, ``FAUST_PEER_ARTICLES`` and ``FAUST_PEER_ARTICLES_SINK``.

Its records carry the namespaces of the agentlib examples (``examples.agent.Add``,
``examples.concurrency.Article``) so that the same JSON means the same thing to both
libraries; its agents do what the examples' agents do.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable
from datetime import datetime

import faust


class Add(faust.Record, namespace="examples.agent.Add"):
    a: int
    b: int


class Article(faust.Record, namespace="examples.concurrency.Article", isodates=True):
    url: str
    date_published: datetime


app = faust.App(
    os.environ.get("FAUST_PEER_APP", "faust-peer"),
    broker=os.environ.get("FAUST_PEER_BROKER", "kafka://localhost:9092"),
    datadir=os.environ.get("FAUST_PEER_DATADIR", "/tmp/faust-peer"),
    web_enabled=False,
    topic_replication_factor=1,
    topic_partitions=1,
    consumer_auto_offset_reset="earliest",
)
articles_sink = app.topic(os.environ.get("FAUST_PEER_ARTICLES_SINK", "faust-peer-articles-out"),
                          value_type=Article)


@app.agent(app.topic(os.environ.get("FAUST_PEER_ADDING", "adding"), value_type=Add))
async def adding(stream: faust.StreamT[Add]) -> AsyncIterable[int]:
    async for value in stream:
        yield value.a + value.b


@app.agent(app.topic(os.environ.get("FAUST_PEER_POW2", "faust-peer-pow2"), value_type=int))
async def pow2(stream: faust.StreamT[int]) -> AsyncIterable[int]:
    async for value in stream:
        yield value * value


@app.agent(app.topic(os.environ.get("FAUST_PEER_ARTICLES", "faust-peer-articles"),
                     value_type=Article), sink=[articles_sink])
async def articles(stream: faust.StreamT[Article]) -> AsyncIterable[Article]:
    async for article in stream:
        assert isinstance(article.date_published, datetime)   # isodates decoded
        yield Article(url=article.url.upper(), date_published=article.date_published)
