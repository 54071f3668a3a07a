"""The guide's streaming map/reduce: ``ask``, ``map``, ``kvmap``, ``join``, ``kvjoin``.

Run the agent under agentd, then ``python -m examples.pow2 square_all``.
"""

from collections.abc import AsyncIterable

import agentlib as faust

app = faust.App('pow2-example')

NUMBERS = [1, 2, 3, 4, 5, 6, 7, 8]


@app.agent()
async def pow2(stream: faust.StreamT[int]) -> AsyncIterable[int]:
    async for value in stream:
        yield value * value


async def square_everything() -> list[int]:
    """Every kind of request once; returns the ``join`` result."""
    assert await pow2.ask(3) == 9
    async for reply in pow2.map(NUMBERS):
        print(f'RECEIVED REPLY: {reply!r}')
    async for reply in pow2.kvmap((f'k{n}', n) for n in NUMBERS):
        print(f'RECEIVED REPLY: {reply!r}')
    results = await pow2.join(NUMBERS)
    assert results == [1, 4, 9, 16, 25, 36, 49, 64]
    assert await pow2.kvjoin([(f'k{n}', n) for n in NUMBERS]) == results
    return results


@app.command()
async def square_all() -> None:
    print(await square_everything())


if __name__ == '__main__':
    app.main()
