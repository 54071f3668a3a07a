"""``mypy --strict``: an agent typed ``-> AsyncIterable[int]`` is an ``Agent[int]``, so
``await adding.ask(...)`` is an ``int`` (``reveal_type`` is checked by the test)."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import reveal_type

import agentlib as faust


class Add(faust.Record):
    a: int
    b: int


app = faust.App("typed-generic")


@app.agent(app.topic("typed-generic-add", value_type=Add))
async def adding(stream: faust.StreamT[Add]) -> AsyncIterable[int]:
    async for value in stream:
        yield value.a + value.b


async def total() -> int:
    answer = await adding.ask(Add(a=1, b=2))
    reveal_type(answer)
    replies = await adding.join([Add(a=1, b=1)])
    return answer + sum(replies)
