"""The guide's four kinds of sink: function, async function, topic, another agent.

Each agent doubles what it receives and hands the result to its sink; an event
counts as done (its offset committable) only once the sink has finished with it.
"""

import asyncio
from collections.abc import AsyncIterable

import agentlib as faust

app = faust.App('sinks-example')


# Function callback: called with each value the agent yields.
def mysink(value: int) -> None:
    print(f'AGENT YIELD: {value!r}')


# Async function callback: awaited before the agent moves on.
async def mysink_async(value: int) -> None:
    print(f'AGENT YIELD: {value!r}')
    # OBS This will force the agent instance that yielded this value
    # to sleep for 1.0 second before continuing on the next event
    # in the stream.
    await asyncio.sleep(1)


# Topic: yielded values are produced to it.
agent_log_topic = app.topic('agent_log', value_type=int)


@app.agent(sink=[mysink])
async def myagent(stream: faust.StreamT[int]) -> AsyncIterable[int]:
    async for value in stream:
        yield value * 2


@app.agent(sink=[mysink_async])
async def myagent_async_sink(stream: faust.StreamT[int]) -> AsyncIterable[int]:
    async for value in stream:
        yield value * 2


@app.agent(sink=[agent_log_topic])
async def myagent_topic_sink(stream: faust.StreamT[int]) -> AsyncIterable[int]:
    async for value in stream:
        yield value


# Another agent: yielded values are sent to it.
@app.agent()
async def agent_b(stream: faust.StreamT[int]) -> AsyncIterable[int]:
    async for value in stream:
        print(f'AGENT B RECEIVED: {value!r}')
        yield value


@app.agent(sink=[agent_b])
async def agent_a(stream: faust.StreamT[int]) -> AsyncIterable[int]:
    async for value in stream:
        print(f'AGENT A RECEIVED: {value!r}')
        yield value * 2
