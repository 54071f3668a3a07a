"""Faust 0.15 behaviours the agents guide relies on, each pinned by a test that failed
before agentlib matched it (``import agentlib as faust``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentlib as faust


class Point(faust.Record, namespace="tests.parity.Point"):
    x: int
    y: int


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- @app.agent(key_type=, value_type=, schema=, topic kwargs) ------------------------

def test_agent_without_channel_takes_key_type_and_value_type():
    """Faust's Agent builds its own topic with ``key_type``/``value_type`` when it is
    given no channel (or a topic name): the agent sees typed keys and Records."""
    app = faust.App("parity-kv")

    @app.agent(key_type=str, value_type=Point)
    async def points(stream: faust.StreamT[Point]) -> Any:
        async for key, point in stream.items():
            yield (key, point.x + point.y)

    assert points.channel.key_type is str
    assert points.channel.value_type is Point

    async def scenario() -> Any:
        async with points.test_context() as ctx:
            await ctx.put({"x": 1, "y": 2}, key="k")
            return ctx.results[0]
    assert run(scenario()) == ("k", 3)


def test_agent_on_topic_name_takes_value_type_schema_and_topic_settings():
    app = faust.App("parity-named")

    @app.agent("named-points", value_type=Point, partitions=6)
    async def named(stream: Any) -> Any:
        async for point in stream:
            yield point

    assert named.channel.get_topic_name() == "named-points"
    assert named.channel.value_type is Point
    assert named.topic_partitions() == {"named-points": 6}

    @app.agent("schema-points", schema=faust.Schema(key_type=str, value_type=Point))
    async def with_schema(stream: Any) -> Any:
        async for point in stream:
            yield point

    assert with_schema.channel.key_type is str
    assert with_schema.channel.value_type is Point


def test_agent_given_a_topic_refuses_key_type_as_faust_does():
    """Faust asserts that key_type/value_type/schema come without a channel object;
    agentlib says so in one line instead of ignoring them."""
    app = faust.App("parity-refuse")
    topic = app.topic("given")
    with pytest.raises(TypeError, match="value_type"):
        @app.agent(topic, value_type=Point)
        async def refused(stream: Any) -> None:
            async for _ in stream:
                pass


def test_agent_keeps_help_isolated_partitions_and_faust_topic_names():
    app = faust.App("parity-attrs")

    @app.agent(name="helped", help="adds things", isolated_partitions=False)
    async def helped(stream: Any) -> None:
        """Docstring."""
        async for _ in stream:
            pass

    assert helped.help == "adds things"
    assert helped.isolated_partitions is False
    assert list(helped.get_topic_names()) == ["parity-attrs-helped"]
    assert helped.info()["help"] == "adds things"
