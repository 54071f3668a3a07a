"""Word count with a table, as Faust's tables guide and its word-count example do it.

Modelled on faust-streaming's word-count example (``examples/word_count.py``) and the
"Tables and Windowing" guide, written for this guide (not a copy): the same Faust API,
and a Faust app as far as the code goes — only ``import agentlib as faust`` differs
from ``import faust``. The one thing left out is the example's web view of the counts
(``@app.page``/``@app.table_route``): agentlib has no web server.

``split_posts`` reads text posts and sends each word to ``count_words`` keyed by the
word, so every word's row lives in the partition (and instance) that counts it (Faust's
co-partitioning rule); ``count_words`` adds one per word to the ``word_counts`` table,
which agentd keeps in RocksDB and in the compacted topic
``word-counts-word_counts-changelog``. ``agentd start`` it with ``instances = 2`` on both
agents and each instance counts the words of the partitions it owns.
"""

import agentlib as faust

app = faust.App('word-counts')
posts_topic = app.topic('posts', value_type=str)

word_counts = app.Table('word_counts', default=int,
                        help='How many times each word was seen (str to int).')


@app.agent(posts_topic)
async def split_posts(posts: faust.StreamT[str]) -> None:
    async for post in posts:
        for word in post.split():
            await count_words.send(key=word, value=word)


@app.agent(value_type=str)
async def count_words(words: faust.StreamT[str]) -> None:
    async for word in words:
        word_counts[word] += 1
