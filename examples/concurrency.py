"""The guide's ``concurrency=10`` agent: order-free work, here without the network.

The guide fetches each article with aiohttp and stores it in a database; this keeps
the shape (slow I/O per event, no ordering needed) with an in-memory stand-in, so the
example runs anywhere. Under agentd, ``concurrency`` starts that many instances.
"""

import asyncio
from collections.abc import AsyncIterable
from datetime import datetime

import agentlib as faust

app = faust.App('concurrency-example')


class Article(faust.Record, isodates=True):
    url: str
    date_published: datetime


news_topic = app.topic('news', value_type=Article)

#: Stand-in for the guide's database: url -> fetched body.
article_store: dict[str, str] = {}


async def fetch(url: str) -> str:
    """Stand-in for ``aiohttp.ClientSession().get(url)``: slow, order-independent I/O."""
    await asyncio.sleep(0.01)
    return f'<html>{url}</html>'


async def store_article_in_db(url: str, body: str) -> None:
    article_store[url] = body


@app.agent(news_topic, concurrency=10)
async def imports_news(articles: faust.StreamT[Article]) -> AsyncIterable[str]:
    async for article in articles:
        response = await fetch(article.url)
        await store_article_in_db(article.url, response)
        yield article.url
