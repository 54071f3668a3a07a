"""Faust's stream surface beyond ``take``: ``take_events``, ``take_with_timestamp``,
``noack_take``, ``add_processor`` and ``concurrency_index``, through ``test_context``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentlib as faust
from agentlib.testing import AgentTestContext


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_take_events_yields_whole_events_in_batches():
    app = faust.App("take-events")
    got: list[list[tuple[Any, int]]] = []
    done = asyncio.Event()

    @app.agent(app.topic("n", value_type=int))
    async def batcher(stream):
        async for events in stream.take_events(2, within=10):
            got.append([(event.key, event.value) for event in events])
            done.set()

    async def scenario() -> None:
        async with batcher.test_context() as agent:
            await agent.put(1, key=b"a", wait=False)
            await agent.put(2, key=b"b", wait=False)
            await asyncio.wait_for(done.wait(), 30)
    run(scenario())
    assert got == [[(b"a", 1), (b"b", 2)]]


def test_take_with_timestamp_adds_the_record_timestamp_to_dict_values():
    app = faust.App("take-ts")
    got: list[list[dict[str, Any]]] = []
    done = asyncio.Event()

    @app.agent(app.topic("d"))
    async def stamped(stream):
        async for values in stream.take_with_timestamp(2, 10, "ts"):
            got.append(values)
            done.set()

    async def scenario() -> None:
        async with stamped.test_context() as agent:
            await agent.put({"x": 1}, timestamp=1700000000.5, wait=False)
            await agent.put({"x": 2}, timestamp=1700000001.0, wait=False)
            await asyncio.wait_for(done.wait(), 30)
    run(scenario())
    assert got == [[{"x": 1, "ts": 1700000000.5}, {"x": 2, "ts": 1700000001.0}]]


def test_noack_take_leaves_acking_to_the_agent():
    app = faust.App("noack-take")
    batches: list[list[int]] = []
    got_batch = asyncio.Event()

    @app.agent(app.topic("n", value_type=int))
    async def holder(stream):
        async for batch in stream.noack_take(2, within=10):
            batches.append(batch)
            got_batch.set()

    async def scenario() -> None:
        # its events stay unacked: stop without waiting the default 10 s for them
        async with AgentTestContext(holder, stop_timeout=0.5) as agent:
            await agent.put(1, wait=False)
            await agent.put(2, wait=False)
            await asyncio.wait_for(got_batch.wait(), 30)
            await agent.put(3, wait=False)
            await asyncio.sleep(0)
            # take() would have acked 1 and 2 on asking for the next batch
            assert agent.done == []
    run(scenario())
    assert batches[0] == [1, 2]


def test_add_processor_transforms_values_in_order():
    app = faust.App("processors")
    seen: list[int] = []

    async def double(value: int) -> int:
        return value * 2

    @app.agent(app.topic("n", value_type=int))
    async def processed(stream):
        stream.add_processor(lambda value: value + 1)
        stream.add_processor(double)
        async for value in stream:
            seen.append(value)

    async def scenario() -> None:
        async with processed.test_context() as agent:
            for value in (1, 2, 3):
                await agent.put(value)
    run(scenario())
    assert seen == [4, 6, 8]


def test_concurrency_index_is_zero_in_test_context():
    app = faust.App("conc-index")
    seen: list[int] = []

    @app.agent(app.topic("n", value_type=int), concurrency=3)
    async def indexed(stream):
        async for _ in stream:
            seen.append(stream.concurrency_index)

    async def scenario() -> None:
        async with indexed.test_context() as agent:
            await agent.put(1)
    run(scenario())
    assert seen == [0]


def test_schema_gives_a_topic_its_types_and_serializers():
    class Order(faust.Record):
        id: int

    app = faust.App("schema")
    schema = faust.Schema(key_type=str, value_type=Order, key_serializer="raw",
                          value_serializer="json")
    topic = app.topic("orders", schema=schema)
    assert (topic.key_type, topic.value_type, topic.value_serializer) == (
        str, Order, "json")
    assert app.topic("orders", schema=schema, value_serializer="raw").value_serializer == "raw"
    seen: list[Any] = []

    @app.agent(topic)
    async def orders(stream):
        async for event in stream.events():
            seen.append((event.key, event.value))

    async def scenario() -> None:
        async with orders.test_context() as agent:
            await agent.put(Order(id=7), key="k")
    run(scenario())
    assert seen == [("k", Order(id=7))]


def test_app_stream_over_an_iterable_takes_batches_and_refuses_topics():
    app = faust.App("app-stream")

    async def numbers():
        for n in range(5):
            yield n

    async def scenario() -> list[list[int]]:
        return [batch async for batch in app.stream(numbers()).take(2, within=5)]
    assert run(scenario()) == [[0, 1], [2, 3], [4]]

    async def mapped() -> list[int]:
        stream = app.stream([1, 2, 3])
        stream.add_processor(lambda value: value * 10)
        return [value async for value in stream]
    assert run(mapped()) == [10, 20, 30]

    async def partial() -> list[list[int]]:
        gate = asyncio.Event()  # 2 comes only after the first batch was yielded

        async def gated():
            yield 1
            await gate.wait()
            yield 2
        batches = []
        async for batch in app.stream(gated()).take(5, within=0.05):
            batches.append(batch)
            gate.set()
        return batches
    # a deadline ends a batch without cancelling the iterable: 2 still arrives
    assert run(partial()) == [[1], [2]]
    with pytest.raises(TypeError, match=r"declare an @app\.agent"):
        app.stream(app.topic("t"))
