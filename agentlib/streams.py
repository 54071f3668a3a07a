"""``Stream``: what an agent iterates, and the stream operators of Faust's API.

A stream does not read Kafka. It pulls decoded events from a :class:`StreamSource`
(the seam's host, fed by the worker) and tells it two things: which events the agent
is working on now (sinks of what it yields attach to those), and when the agent
moved past them (asked for the next one). Operators build a new pull function over
their parent's; all of them share one source, so acking stays in one place.

Acking rules, which the seam turns into "event done":

* iterating asks for the next event → the previous one(s) are released (acked,
  unless the stream was made with ``noack()``; then ``stream.ack(event)`` acks);
* ``take(n)`` keeps the batch current until the agent asks for the next batch;
* ``filter`` releases a rejected event as it pulls the next one;
* ``group_by``/``through`` forward each source event to the derived topic (it is
  done when that produce is delivered) and yield events read back from that topic.
  agentd's supervisor delivers the derived topic to the same agent, so the topic
  must be known before the agent runs: ``Agent.topic_names()`` primes the agent
  function with a probe stream that records the ``group_by``/``through`` calls made
  before its first ``async for`` (see ``agentlib.agents``).
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import operator
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from agentlib.apptype import AppT
from agentlib.events import Event, set_current_event
from agentlib.events import _current as _current_event
from agentlib.fields import FieldDescriptor
from agentlib.topics import Topic

__all__ = ["JoinNotSupported", "Stream", "StreamSource", "StreamT"]

T = TypeVar("T")
#: a duration as Faust's ``Seconds`` takes it: a number of seconds or a ``timedelta``
Seconds = float | datetime.timedelta
#: What ``async for value in stream`` and ``stream.items()`` make of an event (C calls).
_VALUE = operator.attrgetter("value")
_KEY_VALUE = operator.attrgetter("key", "value")
_Pull = Callable[[bool, "float | None"], Awaitable["Event[Any] | None"]]

_JOIN_HELP = ("stream joins are not supported (Faust never implemented them either). "
              "Faust's advice is an @app.task that combines the topics itself; under "
              "agentd the supervisor owns the Kafka consumer (topic.stream() is not "
              "available), so send both inputs to one agent's topic keyed by the join "
              "key (group_by) and combine them there, or give the @app.task a Kafka "
              "consumer of its own")


class JoinNotSupported(NotImplementedError):
    """Raised by ``stream & other`` and ``stream.join(...)``."""


class StreamSource(Protocol):
    """Where a stream's events come from (implemented by ``agentlib.seam.AgentHost``)."""

    app: AppT

    async def next_event(self, release: bool, auto_ack: bool,
                         deadline: float | None) -> Event[Any] | None:
        """The next event, made current. ``release``: first release the current ones.

        Returns None only when ``deadline`` (loop time) passed first; raises
        ``StopAsyncIteration`` when the stream ended (the host is stopping).
        """
        ...

    def forward(self, event: Event[Any], topic: Topic, key: Any) -> None:
        """Produce ``event``'s value to ``topic`` with ``key``; ``event`` waits for it."""
        ...

    def declare(self, topic: Topic) -> None:
        """A derived topic this agent reads back (raises if it was not primed)."""
        ...

    def ack(self, event: Event[Any]) -> bool:
        """Acknowledge ``event`` (noack streams)."""
        ...

    @property
    def last_event(self) -> Event[Any] | None:
        """The event handed out most recently."""
        ...


class Stream(Generic[T]):
    """An async iterable of values of type ``T`` with Faust's stream operators."""

    def __init__(self, source: StreamSource, topic: Topic, *, pull: _Pull | None = None,
                 auto_ack: bool = True, prefix: str = "") -> None:
        self.source = source
        self.app = source.app
        self.channel = topic
        #: the agent's name: the start of its ``group_by`` topics' names (Faust's)
        self.prefix = prefix
        self._auto_ack = auto_ack
        self._pull: _Pull = pull if pull is not None else self._pull_from_source

    async def _pull_from_source(self, release: bool, deadline: float | None
                                ) -> Event[Any] | None:
        event = await self.source.next_event(release, self._auto_ack, deadline)
        if event is not None:
            set_current_event(event)
        return event

    def _derive(self, pull: _Pull) -> Stream[Any]:
        return Stream(self.source, self.channel, pull=pull, auto_ack=self._auto_ack,
                      prefix=self.prefix)

    # -- iteration ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate(_VALUE)

    async def _iterate(self, project: Callable[[Event[Any]], Any] | None
                       ) -> AsyncIterator[Any]:
        """Each event, made current, as ``project`` makes it (None: the event itself).

        ``async for value in stream``, ``stream.events()`` and ``stream.items()`` all
        come here, so each gets the fast path of the agent's own stream."""
        if self._pull == self._pull_from_source:
            # The agent's own stream (no operator): ask the source directly, without
            # an await at all while events are queued (poll_event), else one await
            # instead of three nested ones.
            next_event, auto_ack = self.source.next_event, self._auto_ack
            poll = getattr(self.source, "poll_event", None)
            set_current = _current_event.set  # set_current_event, without the call
            while True:
                event = poll(auto_ack) if poll is not None else None
                if event is None:
                    try:  # poll_event already released the current events
                        event = await next_event(poll is None, auto_ack, None)
                    except StopAsyncIteration:
                        return
                assert event is not None  # no deadline: only StopAsyncIteration ends it
                set_current(event)
                yield event if project is None else project(event)
        while True:
            try:
                event = await self._next_event()
            except StopAsyncIteration:
                return
            yield event if project is None else project(event)

    async def _next_event(self) -> Event[Any]:
        event = await self._pull(True, None)
        assert event is not None  # no deadline: only StopAsyncIteration ends it
        return event

    def events(self) -> AsyncIterator[Event[T]]:
        """Iterate over whole events (key, value, headers, message)."""
        return self._iterate(None)

    def items(self) -> AsyncIterator[tuple[Any, T]]:
        """Iterate over ``(key, value)`` pairs."""
        return self._iterate(_KEY_VALUE)

    async def enumerate(self, start: int = 0) -> AsyncIterator[tuple[int, T]]:
        """Iterate over ``(index, value)`` pairs, counting from ``start``."""
        index = start
        async for value in self:
            yield index, value
            index += 1

    async def take(self, max_: int, within: Seconds | None = None
                   ) -> AsyncIterator[list[T]]:
        """Yield lists of up to ``max_`` values; a partial list after ``within`` seconds.

        The values of one list are acked together when the agent asks for the next
        list.
        """
        async for events in self.take_events(max_, within):
            yield [event.value for event in events]

    async def take_events(self, max_: int, within: Seconds | None = None
                          ) -> AsyncIterator[list[Event[T]]]:
        """As :meth:`take`, but whole events (key, headers, message), as Faust's.

        ``within``: seconds, or a ``timedelta`` (Faust's ``Seconds``)."""
        if isinstance(within, datetime.timedelta):
            within = within.total_seconds()
        if max_ < 1:
            raise ValueError("take() needs max_ >= 1")
        loop = asyncio.get_running_loop()
        while True:
            try:
                first = await self._pull(True, None)
            except StopAsyncIteration:
                return
            assert first is not None
            batch = [first]
            deadline = None if within is None else loop.time() + within
            while len(batch) < max_:
                try:
                    event = await self._pull(False, deadline)
                except StopAsyncIteration:
                    break
                if event is None:
                    break
                batch.append(event)
            yield batch

    async def take_with_timestamp(self, max_: int, within: Seconds | None,
                                  timestamp_field_name: str) -> AsyncIterator[list[T]]:
        """As :meth:`take`; a dict value also gets its record's Kafka timestamp (in
        seconds, as Faust's ``message.timestamp``) under ``timestamp_field_name``."""
        async for events in self.take_events(max_, within):
            values = []
            for event in events:
                value = event.value
                stamp = event.message.timestamp_ms
                if isinstance(value, dict) and timestamp_field_name and stamp is not None:
                    value[timestamp_field_name] = stamp / 1000.0
                values.append(value)
            yield values

    def noack_take(self, max_: int, within: Seconds | None = None
                   ) -> AsyncIterator[list[T]]:
        """As :meth:`take` on a :meth:`noack` stream: nothing is acked for the agent,
        which acks each event itself (``stream.ack(event)``), as Faust's."""
        return self.noack().take(max_, within)

    def add_processor(self, processor: Callable[[T], Any]) -> None:
        """Pass every value through ``processor`` (sync or async) before the agent sees
        it; processors run in the order added, each on the previous one's result."""
        parent = self._pull

        async def pull(release: bool, deadline: float | None) -> Event[Any] | None:
            event = await parent(release, deadline)
            if event is not None:
                result = processor(event.value)
                event.value = await result if inspect.isawaitable(result) else result
            return event
        self._pull = pull

    @property
    def concurrency_index(self) -> int:
        """Which of the agent's ``concurrency`` instances reads this stream (0 based);
        under agentd an instance is one of the agent's ``instances`` on this daemon."""
        return int(getattr(self.source, "concurrency_index", 0))

    # -- operators ------------------------------------------------------------------

    def filter(self, fun: Callable[[T], Any]) -> Stream[T]:
        """Only values for which ``fun`` (sync or async) is true; others are acked."""
        parent = self._pull

        async def pull(release: bool, deadline: float | None) -> Event[Any] | None:
            while True:
                event = await parent(release, deadline)
                if event is None:
                    return None
                verdict = fun(event.value)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                if verdict:
                    return event
        return self._derive(pull)

    def group_by(self, key: FieldDescriptor | Callable[[T], Any] | Any, *,
                 name: str | None = None, topic: Topic | None = None,
                 partitions: int | None = None) -> Stream[T]:
        """Repartition by a new key: produce to the repartition topic, read it back.

        ``key`` is a Record field (``BankTransfer.account_id``) or a callable (sync
        or async; then ``name`` is required). ``Any`` in the annotation because mypy
        types ``BankTransfer.account_id`` as the field's type (``str``), not as the
        descriptor it is at run time.

        The topic is named as faust-streaming names it (``Stream.group_by``), so a
        Faust worker and agentd agree and two agents never share one:
        ``<agent name>-<topic>-<name>-repartition``, or, for an agent reading its
        default topic (``<app id>-<agent name>``), ``<that topic>-<name>-repartition``.
        ``name`` defaults to the field's ``Model.field``. ``partitions`` defaults to
        the app's ``topic_partitions`` setting, else the daemon's default (8).
        """
        if name is None:
            if not isinstance(key, FieldDescriptor):
                raise TypeError("group_by with a callable key must set name=")
            name = key.ident
        if topic is None:
            prefix = f"{self.prefix}-" if self.prefix and not self.channel.has_prefix else ""
            topic = self.channel.derive(
                prefix=prefix, suffix=f"-{name}-repartition", internal=True,
                partitions=partitions or self.app.conf.get("topic_partitions"))

        async def new_key(event: Event[Any]) -> Any:
            if isinstance(key, FieldDescriptor):
                return key.getattr(event.value)
            result = key(event.value)
            return await result if inspect.isawaitable(result) else result
        return self._read_back(topic, new_key)

    def through(self, channel: str | Topic) -> Stream[T]:
        """Forward every value to ``channel`` and continue with the stream read from it."""
        topic = channel if isinstance(channel, Topic) else Topic(
            self.app, channel, key_type=self.channel.key_type,
            value_type=self.channel.value_type)

        async def same_key(event: Event[Any]) -> Any:
            return event.key
        return self._read_back(topic, same_key)

    def _read_back(self, topic: Topic, key_of: Callable[[Event[Any]], Awaitable[Any]]
                   ) -> Stream[T]:
        self.source.declare(topic)
        parent = self._pull
        target = topic.get_topic_name()

        async def pull(release: bool, deadline: float | None) -> Event[Any] | None:
            while True:
                event = await parent(release, deadline)
                if event is None or event.message.topic == target:
                    return event
                self.source.forward(event, topic, await key_of(event))
        return self._derive(pull)

    def echo(self, *channels: str | Topic) -> Stream[T]:
        """Also send every value to ``channels``; the event waits for those sends."""
        topics = [c if isinstance(c, Topic) else Topic(self.app, c) for c in channels]
        parent = self._pull

        async def pull(release: bool, deadline: float | None) -> Event[Any] | None:
            event = await parent(release, deadline)
            if event is not None:
                for topic in topics:
                    self.source.forward(event, topic, event.key)
            return event
        return self._derive(pull)

    # -- acking ---------------------------------------------------------------------

    def noack(self) -> Stream[T]:
        """A stream whose events are not acked automatically: call ``ack(event)``."""
        if self._pull != self._pull_from_source:
            raise TypeError("call noack() on the agent's stream before other operators")
        return Stream(self.source, self.channel, auto_ack=False, prefix=self.prefix)

    def ack(self, event: Event[Any]) -> bool:
        """Ack ``event`` (from a ``noack()`` stream); False if it was already acked."""
        return self.source.ack(event)

    @property
    def current_event(self) -> Event[Any] | None:
        """The event most recently handed to the agent."""
        return self.source.last_event

    # -- joins: not supported -------------------------------------------------------

    def __and__(self, other: object) -> Stream[Any]:
        raise JoinNotSupported(_JOIN_HELP)

    def join(self, *fields: Any) -> Stream[Any]:
        """Not supported: raises :class:`JoinNotSupported` naming the alternative."""
        raise JoinNotSupported(_JOIN_HELP)

    combine = join
    left_join = join
    inner_join = join
    outer_join = join

    def __repr__(self) -> str:
        return f"<Stream: {self.channel!r}>"


#: The type to annotate agent streams with (``StreamT[Add]``), as in Faust.
StreamT = Stream
