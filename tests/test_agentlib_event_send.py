"""Faust's ``Event.send`` and ``Event.forward`` (faust/events.py), against real Kafka.

``send`` publishes the event's key, value and headers (or the ones given) encoded with
the target's schema; ``forward`` publishes the original message's bytes, not encoded
again. As in Faust, ``bytes`` given to a topic's ``send`` are published as they are,
whatever the topic's serializer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kafkatools
import pytest

import agentlib as faust


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.kafka
def test_event_send_and_forward_publish_to_other_topics(kafka_bootstrap, new_topic):
    source, sent, forwarded, raw = (new_topic(partitions=1) for _ in range(4))
    app = faust.App("event-send", broker=f"kafka://{kafka_bootstrap}")
    target = app.topic(sent, value_serializer="json", key_serializer="raw")

    @app.agent(source)
    async def relay(stream: Any) -> Any:
        async for event in stream.events():
            await event.send(target)                              # its own key and value
            await event.send(sent, value={"changed": True}, headers={"h": b"2"})
            await event.forward(forwarded)                        # the bytes as they came
            await app.topic(raw).send(value=b"\x00not json")     # bytes are not re-encoded
            yield event.value

    async def scenario() -> None:
        async with relay.test_context() as ctx:
            await ctx.put({"n": 1}, key=b"k1", headers={"h": b"1"})
            assert ctx.results[0] == {"n": 1}
    run(scenario())

    first, second = kafkatools.read_to_end(kafka_bootstrap, sent)
    assert (first.key, json.loads(first.value), first.headers) == (b"k1", {"n": 1},
                                                                  (("h", b"1"),))
    assert (second.key, json.loads(second.value), second.headers) == (
        b"k1", {"changed": True}, (("h", b"2"),))
    (copy,) = kafkatools.read_to_end(kafka_bootstrap, forwarded)
    assert copy.key == b"k1" and json.loads(copy.value) == {"n": 1}
    assert copy.headers == (("h", b"1"),)
    (bare,) = kafkatools.read_to_end(kafka_bootstrap, raw)
    assert bare.value == b"\x00not json"


def test_event_forward_keeps_the_original_bytes_even_where_the_schema_differs():
    """The forwarded value is the message's own bytes: a value the target topic's
    serializer would write differently (here: pickled) reaches it unchanged."""
    app = faust.App("event-forward")
    out = app.topic("forward-out", value_serializer="pickle")
    sent: list[tuple[Any, Any]] = []
    originals: list[tuple[Any, Any]] = []

    class Producer:
        """Stands in for the app's producer: keeps what reaches it, delivers at once."""

        def send_soon(self, topic: str, key: Any, value: Any, *args: Any) -> Any:
            sent.append((key, value))
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
    app._producer = Producer()  # type: ignore[assignment]

    @app.agent(app.topic("forward-in", value_serializer="json"))
    async def relay(stream: Any) -> Any:
        async for event in stream.events():
            originals.append((event.message.key, event.message.value))
            await event.forward(out)
            yield event.value

    async def scenario() -> None:
        async with relay.test_context() as ctx:
            await ctx.put({"n": 2}, key=b"k2")
    run(scenario())
    assert sent == originals and json.loads(originals[0][1]) == {"n": 2}
    assert out.encode_value({"n": 2}) != originals[0][1]  # sent again, it would differ


@pytest.mark.parametrize("option", ["schema"])
def test_event_send_refuses_the_options_agentd_does_not_honour(option):
    app = faust.App("event-send-options")
    seen: list[str] = []

    @app.agent()
    async def relay(stream: Any) -> Any:
        async for event in stream.events():
            try:
                await event.send("elsewhere", **{option: object()})
            except TypeError as exc:
                seen.append(str(exc))
            yield event.value

    async def scenario() -> None:
        async with relay.test_context() as ctx:
            await ctx.put(1)
    run(scenario())
    assert len(seen) == 1 and option in seen[0]


class _Capture:
    """Stands in for the app's producer: keeps (topic, key, value), delivers at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any]] = []

    def send_soon(self, topic: str, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        self.sent.append((topic, key, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(("metadata", topic))
        return done


def test_per_message_serializers_and_callback_on_topic_app_and_event_sends():
    """Faust's ``key_serializer=``/``value_serializer=``/``callback=`` on ``Topic.send``,
    ``app.send`` and ``Event.send``: the message is encoded with them, the callback gets
    the delivered future."""
    app = faust.App("send-serializers")
    producer = app._producer = _Capture()  # type: ignore[assignment]
    out = app.topic("ser-out", value_serializer="raw")
    called: list[Any] = []

    @app.agent(app.topic("ser-agent", value_serializer="raw"))
    async def target(stream: Any) -> None:
        async for _ in stream:
            pass

    @app.agent(app.topic("ser-in", value_serializer="json"))
    async def relay(stream: Any) -> Any:
        async for event in stream.events():
            await event.send(out, key_serializer="json", value_serializer="json")
            yield event.value

    async def scenario() -> None:
        await out.send(key="k", value={"a": 1}, key_serializer="json",
                       value_serializer="json", callback=called.append)
        await app.send("ser-out", key="k", value=[2], key_serializer="json",
                       value_serializer="json")
        with pytest.raises(TypeError, match="schema"):
            await app.send("ser-out", value=b"x", schema=object())
        with pytest.raises(TypeError, match="bogus"):
            await app.send("ser-out", value=b"x", bogus=1)
        async with relay.test_context() as ctx:
            await ctx.put({"n": 3}, key=b"k3")
        await target.send(key="k4", value=4, key_serializer="json", value_serializer="json",
                          callback=called.append, force=True)
    run(scenario())

    assert [(t, k, json.loads(v)) for t, k, v in producer.sent] == [
        ("ser-out", b'"k"', {"a": 1}), ("ser-out", b'"k"', [2]),
        ("ser-out", b"k3", {"n": 3}),  # bytes go as they are, serializer or not
        ("ser-agent", b'"k4"', 4)]
    assert [future.result() for future in called] == [("metadata", "ser-out"),
                                                     ("metadata", "ser-agent")]
