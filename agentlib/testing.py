"""``agent.test_context()``: run an agent in memory, through the real seam.

The context is an in-memory feeder for :class:`agentlib.seam.AgentHost`: ``put``
encodes the value with the agent's topic schema into a :class:`RawRecord` (offset =
event index), feeds it, and returns the decoded event once it is done or the agent
is waiting for more input (a ``take(n)`` batch still filling). Nothing touches
Kafka unless the agent has topic/agent sinks or answers an ``ask``;
``group_by``/``through``/``echo`` forwards are fed straight back to the same host,
which is what the supervisor would do.

``results`` maps event index (the n-th ``put``, counting from 0, which is also the
put event's ``message.offset``) to the value the agent yielded for it. Records fed
back from a ``group_by``/``through`` topic count offsets on that topic, so they never
shift the index of later puts; what the agent yields for them is filed under the put
they came from. An exception raised by the agent for a ``put`` is re-raised
from that ``put`` (the event is acked and the agent restarted, as in production).
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Protocol

from agentlib import codecs
from agentlib.decoding import decode_event
from agentlib.events import Event
from agentlib.rawrecord import RawRecord, new_raw_record
from agentlib.records import Record
from agentlib.seam import AgentHost, ErrorVerdict, HostedAgent
from agentlib.topics import CodecArg, HeadersArg

__all__ = ["AgentTestContext", "AgentUnderTest"]


def _encode(serializer: str | codecs.CodecLike, obj: Any) -> bytes | None:
    """``obj`` as bytes with ``serializer`` instead of the topic's (a Record as its
    wire dict), as Faust's ``put(key_serializer=, value_serializer=)``."""
    if obj is None:
        return None
    if isinstance(obj, Record):
        obj = obj.to_representation()
    return codecs.dumps(serializer, obj)


class AgentUnderTest(HostedAgent, Protocol):
    """What the test context needs of an agent (an ``agentlib.Agent``): what the host
    reads, and how the agent addresses a request, which ``put`` encodes as a client's
    ``send`` would."""

    def _with_reply_to(self, value: Any, reply_to: Any, correlation_id: str | None,
                       headers: HeadersArg) -> tuple[Any, list[tuple[str, bytes]] | None]: ...


class AgentTestContext:
    """What ``async with agent.test_context() as ctx`` gives: ``put`` and ``results``."""

    def __init__(self, agent: AgentUnderTest, *, stop_timeout: float = 10.0) -> None:
        self.agent = agent
        self.results: dict[int, Any] = {}
        self.errors: dict[int, BaseException] = {}
        self.done: list[RawRecord] = []
        self._stop_timeout = stop_timeout
        self._next_offsets: dict[str, int] = {}
        #: (topic, offset) of a fed-back record → index of the put it came from.
        self._origin: dict[tuple[str, int], int] = {}
        self._waiting: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._events: dict[tuple[str, int], Event[Any]] = {}
        self._host: AgentHost | None = None
        self._reported: BaseException | None = None

    @property
    def host(self) -> AgentHost:
        """The seam host running the agent (started by ``__aenter__``)."""
        if self._host is None:
            raise RuntimeError("use the test context with 'async with'")
        return self._host

    async def __aenter__(self) -> AgentTestContext:
        self._host = AgentHost(self.agent, on_done=self._on_done, on_error=self._on_error,
                               forwarder=self._forward, on_yield=self._on_yield,
                               on_event=self._remember)
        await self._host.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            await self.host.stop(self._stop_timeout)
        except Exception as failure:
            if exc is None and failure is not self._reported:  # not seen by the test yet
                raise

    async def put(self, value: Any = None, key: Any = None, partition: int | None = None,
                  timestamp: float | None = None, headers: HeadersArg = None,
                  key_serializer: CodecArg = None, value_serializer: CodecArg = None, *,
                  reply_to: Any = None, correlation_id: str | None = None,
                  wait: bool = True) -> Event[Any]:
        """Run one message through the agent; return its decoded event (Faust's
        ``AgentTestWrapper.put`` signature).

        ``key`` and ``value`` travel as bytes encoded with the topic's schema (or
        ``key_serializer``/``value_serializer``), as they would through Kafka.
        ``timestamp`` is in seconds (default: now); ``reply_to`` (an agent, topic or
        topic name) makes the message a request.
        """
        topic = self.agent.channel
        value, header_list = self.agent._with_reply_to(value, reply_to, correlation_id,
                                                       headers)
        raw_key = (topic.encode_key(key) if key_serializer is None
                   else _encode(key_serializer, key))
        raw_value = (topic.encode_value(value) if value_serializer is None
                     else _encode(value_serializer, value))
        record = self._record(topic.get_topic_name(), partition or 0, raw_key, raw_value,
                              tuple(header_list or ()), timestamp)
        finished = asyncio.get_running_loop().create_future()
        self._waiting[(record.topic, record.offset)] = finished
        self.host.feed(record)
        if wait:
            await self._until_done_or_idle(finished)
        slot = (record.topic, record.offset)
        error = self.errors.get(record.offset)
        if error is not None and finished.done():
            raise error
        event = self._events.get(slot)
        if event is None:  # wait=False, or a take() batch still filling: not read yet
            return decode_event(topic, record)
        return event

    def _record(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                headers: tuple[tuple[str, bytes], ...], timestamp: float | None = None
                ) -> RawRecord:
        offset = self._next_offsets.get(topic, 0)
        self._next_offsets[topic] = offset + 1
        seconds = time.time() if timestamp is None else timestamp
        return new_raw_record(topic, partition, offset, int(seconds * 1000), key, value,
                              headers)

    async def _until_done_or_idle(self, finished: asyncio.Future[None]) -> None:
        host = self.host
        assert host.task is not None
        while not finished.done():
            idle: asyncio.Future[Any] = asyncio.ensure_future(host.idle.wait())
            waiting: set[asyncio.Future[Any]] = {finished, idle, host.task}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
            if host.task.done():
                self._reported = host.task.exception()
                host.task.result()  # the agent stopped: raise why
                raise RuntimeError(f"agent {self.agent.name} returned")
            if host.idle.is_set() and not finished.done():
                await asyncio.sleep(0)  # let done-callbacks of finished sinks run
                if host.idle.is_set():
                    return

    def _on_done(self, record: RawRecord) -> None:
        self.done.append(record)
        finished = self._waiting.pop((record.topic, record.offset), None)
        if finished is not None and not finished.done():
            finished.set_result(None)

    async def _on_error(self, record: RawRecord, exc: BaseException,
                        attempt: int) -> ErrorVerdict:
        self.errors[self._put_index(record)] = exc
        return ErrorVerdict.ACK

    def _put_index(self, record: RawRecord) -> int:
        """The index of the put ``record`` is, or was fed back from."""
        return self._origin.get((record.topic, record.offset), record.offset)

    def _on_yield(self, events: list[Event[Any]], value: Any) -> None:
        for event in events:
            self.results[self._put_index(event.message)] = value

    def _remember(self, event: Event[Any]) -> None:
        self._events[(event.message.topic, event.message.offset)] = event

    def _forward(self, record: RawRecord) -> asyncio.Future[None] | None:
        """A group_by/through/echo produce: feed it back to the host if it reads it.

        The source event then waits for the forwarded one, so ``put`` returns after
        the agent processed the repartitioned event; results are keyed by the source.
        """
        if record.topic not in self.agent.topic_names():
            return None  # echo() to a topic nobody here reads: delivered as far as we care
        seconds = None if record.timestamp_ms is None else record.timestamp_ms / 1000
        forwarded = self._record(record.topic, 0, record.key, record.value, record.headers,
                                 seconds)  # keeps the source's time, for windowed tables
        source = self.host.last_event
        if source is not None:
            self._origin[(forwarded.topic, forwarded.offset)] = self._put_index(
                source.message)
        finished = asyncio.get_running_loop().create_future()
        self._waiting[(forwarded.topic, forwarded.offset)] = finished
        self.host.feed(forwarded)
        return finished
