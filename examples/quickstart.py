"""The quick start's app: the ``adding`` agent fed by a timer, so output shows at once.

Every second the timer casts a random ``Add`` to the agent; the agent prints the sum
(and yields it, so an ``ask`` gets it too). agentd runs it with
``agentd start examples/quickstart.toml``.
"""

import random
from collections.abc import AsyncIterable

import agentlib as faust


class Add(faust.Record):
    a: int
    b: int


app = faust.App('quickstart')
topic = app.topic('quickstart-adding', value_type=Add)


@app.agent(topic)
async def adding(stream: faust.StreamT[Add]) -> AsyncIterable[int]:
    async for value in stream:
        total = value.a + value.b
        print(f'{value.a} + {value.b} = {total}', flush=True)
        yield total


@app.timer(1.0)
async def feed_adding() -> None:
    await adding.cast(Add(a=random.randint(0, 99), b=random.randint(0, 99)))
