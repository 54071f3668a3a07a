"""More of the Faust API under ``mypy --strict``: stream operators, codecs, tasks, timers.

Not a test module: ``test_agentlib_typing`` type-checks it (it is never imported).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterable
from typing import Any

import agentlib as faust
from agentlib import StreamT


class Add(faust.Record, namespace="tests.typedmore.Add"):
    a: int
    b: int


class Upper(faust.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return str(obj).upper().encode()

    def _loads(self, data: bytes) -> Any:
        return data.decode().lower()


faust.codecs.register("upper-typed", Upper())
app = faust.App("typed-more")
topic = app.topic("typed-more-adding", value_type=Add)


@app.agent(topic)
async def adding(stream: StreamT[Add]) -> AsyncIterable[int]:
    async for _key, value in stream.items():
        yield value.a + value.b
    async for event in stream.noack().events():
        event.ack()
        yield event.value.a
    async for index, add in stream.enumerate():
        yield index + add.a
    async for add in stream.echo("copy").through("other"):
        yield add.b


@app.task
async def on_start(app: faust.App) -> None:
    await adding.cast(Add(1, 2))


@app.timer(interval=datetime.timedelta(seconds=5))
async def every() -> None:
    async for reply in adding.map([Add(1, 1)]):
        print(reply)
    results: list[Any] = await adding.kvjoin([(b"k", Add(2, 2))])
    del results


async def check() -> None:
    async with adding.test_context() as agent:
        event = await agent.put(Add(1, 2))
        print(agent.results[event.message.offset])
