"""``app.stream(iterable)``: Faust's stream operators over values a task already has.

Faust's ``app.stream`` also takes a topic, consuming it inside the worker. Under agentd
the supervisor owns the one consumer and only agents read topics, so a topic or a
channel here is refused with a message that names ``@app.agent`` instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from agentlib.apptype import AppT
from agentlib.events import Event
from agentlib.rawrecord import new_raw_record
from agentlib.streams import Stream
from agentlib.topics import Topic

__all__ = ["iterable_stream"]


class _IterableSource:
    """A :class:`~agentlib.streams.StreamSource` reading values from an iterable."""

    def __init__(self, app: AppT, values: AsyncIterable[Any] | Iterable[Any],
                 name: str) -> None:
        self.app = app
        self._name = name
        self._values = _aiter(values)
        self._offset = 0
        self._last: Event[Any] | None = None
        self._pending: asyncio.Task[Any] | None = None

    async def next_event(self, release: bool, auto_ack: bool,
                         deadline: float | None) -> Event[Any] | None:
        loop = asyncio.get_running_loop()
        if self._pending is None:  # kept across a deadline: the iterable is not cancelled
            self._pending = loop.create_task(_next(self._values))
        wait = None if deadline is None else max(deadline - loop.time(), 0.0)
        done, _ = await asyncio.wait({self._pending}, timeout=wait)
        if not done:
            return None
        pending, self._pending = self._pending, None
        value = pending.result()  # StopAsyncIteration: the stream ended
        record = new_raw_record(self._name, 0, self._offset, int(time.time() * 1000),
                                None, None, ())
        self._offset += 1
        self._last = Event(None, value, {}, record)
        return self._last

    def forward(self, event: Event[Any], topic: Topic, key: Any) -> None:
        raise TypeError("app.stream(iterable) has no group_by/through: use an agent")

    def declare(self, topic: Topic) -> None:
        raise TypeError("app.stream(iterable) has no group_by/through: use an agent")

    def ack(self, event: Event[Any]) -> bool:
        return False

    @property
    def last_event(self) -> Event[Any] | None:
        return self._last


def iterable_stream(app: AppT, values: Any, channel: Topic) -> Stream[Any]:
    """A stream over ``values`` (an iterable or async iterable)."""
    if isinstance(values, Topic):
        raise TypeError(
            f"app.stream({values!r}): under agentd only agents read topics and "
            "channels; declare an @app.agent on it instead")
    if not isinstance(values, (AsyncIterable, Iterable)):
        raise TypeError(f"app.stream() needs an iterable, got {values!r}")
    return Stream(_IterableSource(app, values, channel.get_topic_name()), channel)


async def _next(values: AsyncIterator[Any]) -> Any:
    return await anext(values)


async def _aiter(values: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if isinstance(values, AsyncIterable):
        async for value in values:
            yield value
    else:
        for value in values:
            yield value
