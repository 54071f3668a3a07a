"""The seed guide's typed agent and command, for ``mypy --strict`` (see test_agentlib_typing).

Not a test module: it is type-checked, and imported once to prove it also runs.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable

import agentlib as faust
from agentlib import StreamT
from agentlib.cli import argument, option


class Add(faust.Record, namespace="tests.typed.Add"):
    a: int
    b: int


class BankTransfer(faust.Record, namespace="tests.typed.BankTransfer"):
    account_id: str
    amount: float


app = faust.App("typed-example", broker="kafka://localhost:9092")
topic = app.topic("typed-adding", value_type=Add)
transfers = app.topic("typed-transfers", value_type=BankTransfer)


@app.agent(topic)
async def adding(stream: StreamT[Add]) -> AsyncIterable[int]:
    async for value in stream:
        yield value.a + value.b


@app.agent(transfers)
async def by_account(stream: StreamT[BankTransfer]) -> AsyncIterable[float]:
    async for transfer in stream.group_by(BankTransfer.account_id).filter(
            lambda t: t.amount > 0):
        yield transfer.amount
    async for batch in stream.take(10, within=1.0):
        yield sum(t.amount for t in batch)


@app.command(
    argument("a", type=int, help="First number to add"),
    argument("b", type=int, help="Second number to add"),
    option("--print/--no-print", help="Enable debug output"),
)
async def send_value(a: int, b: int, print: bool) -> None:
    if print:
        builtins.print(f"Sending Add({a}, {b})...")  # `print` is the flag here
    reply: int = await adding.ask(Add(a, b))
    await adding.cast(Add(a=reply, b=0))
    results: list[int] = await adding.join([Add(1, 1), Add(2, 2)])
    del results


if __name__ == "__main__":
    app.main()
