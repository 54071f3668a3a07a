"""``Event``: one decoded message as the agent sees it, and ``current_event()``.

An Event pairs the decoded key and value with the raw record it came from (so the
worker can ack it by offset) and with the request/reply addressing of an ``ask``.
Acking is delegated to a ticket the seam attaches: the Event itself knows nothing
about offsets or sinks.

``send``/``forward`` are Faust's: the event's key, value and headers (or the ones
given) to another topic, channel or agent, encoded again or (``forward``) as the
original bytes. Faust attaches such a message to the event and publishes it when the
event is acked (at once with ``force=True``); agentd publishes it at once and returns
on its delivery report, so the agent, which awaits it, is done with the record only
after the delivery, as with every send from an agent.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from agentlib.rawrecord import RawRecord

__all__ = ["USE_EXISTING_HEADERS", "USE_EXISTING_KEY", "USE_EXISTING_VALUE", "Event",
           "Ticket", "current_event"]

T = TypeVar("T")

#: Faust's markers (``faust.types.events``) for "the event's own" key, value, headers.
USE_EXISTING_KEY: Any = object()
USE_EXISTING_VALUE: Any = object()
USE_EXISTING_HEADERS: Any = object()
#: Faust's ``send`` options passed on to the target's ``send``; ``schema`` is refused
#: (a topic's setting here); ``force`` is taken and changes nothing (sent at once anyway).
_PASSED_OPTIONS = ("key_serializer", "value_serializer", "callback")


class Ticket(Protocol):
    """What an Event's ``ack()`` calls: the seam's record of one fed message."""

    def ack(self) -> bool: ...


class Event(Generic[T]):
    """A decoded message: ``key``, ``value``, ``headers``, the raw ``message``.

    ``reply_to``/``correlation_id`` are set when the message was an ``ask`` (read
    from the ``Faust-Ag-*`` headers or from a ``@ReqRepRequest`` envelope).
    """

    __slots__ = ("_ticket", "correlation_id", "headers", "key", "message", "reply_to",
                 "value")

    def __init__(self, key: Any, value: T, headers: Mapping[str, bytes],
                 message: RawRecord, *, reply_to: str | None = None,
                 correlation_id: str | None = None, ticket: Ticket | None = None) -> None:
        self.key = key
        self.value = value
        self.headers = headers
        self.message = message
        self.reply_to = reply_to
        self.correlation_id = correlation_id
        self._ticket = ticket

    def ack(self) -> bool:
        """Mark this event as processed (for streams iterated with ``noack()``).

        Returns False if it was already acked. The message is done once its sinks
        also completed.
        """
        return self._ticket.ack() if self._ticket is not None else False

    async def send(self, channel: Any, key: Any = USE_EXISTING_KEY,
                   value: Any = USE_EXISTING_VALUE, partition: int | None = None,
                   timestamp: float | None = None, headers: Any = USE_EXISTING_HEADERS,
                   **options: Any) -> Any:
        """Publish this event's key, value and headers, or those given, to ``channel``
        (a topic, channel, agent or topic name) with its schema; returns the delivery's
        ``RecordMetadata``."""
        return await _send_to(
            channel, self.key if key is USE_EXISTING_KEY else key,
            self.value if value is USE_EXISTING_VALUE else value, partition, timestamp,
            dict(self.headers) if headers is USE_EXISTING_HEADERS else headers, options)

    async def forward(self, channel: Any, key: Any = USE_EXISTING_KEY,
                      value: Any = USE_EXISTING_VALUE, partition: int | None = None,
                      timestamp: float | None = None, headers: Any = USE_EXISTING_HEADERS,
                      **options: Any) -> Any:
        """Publish the original message to ``channel``: its key and value bytes as they
        came (not encoded again) and its headers, unless others are given."""
        message = self.message
        return await _send_to(
            channel, message.key if key is USE_EXISTING_KEY else key,
            message.value if value is USE_EXISTING_VALUE else value, partition, timestamp,
            list(message.headers) or None if headers is USE_EXISTING_HEADERS else headers,
            options)

    def __repr__(self) -> str:
        return (f"<Event: {self.message.topic}[{self.message.partition}]@"
                f"{self.message.offset} k={self.key!r} v={self.value!r}>")


def _event_maker() -> Callable[[Any, Any, Mapping[str, bytes], RawRecord, str | None,
                               str | None, Ticket | None], Event[Any]]:
    """``Event(key, value, headers, message, reply_to=..., correlation_id=...,
    ticket=...)`` for the seam's hot path: positional, its slots set directly (the
    keyword-only call costs about twice as much)."""
    new = object.__new__

    def make(key: Any, value: Any, headers: Mapping[str, bytes], message: RawRecord,
             reply_to: str | None, correlation_id: str | None,
             ticket: Ticket | None) -> Event[Any]:
        event: Event[Any] = new(Event)
        event.key = key
        event.value = value
        event.headers = headers
        event.message = message
        event.reply_to = reply_to
        event.correlation_id = correlation_id
        event._ticket = ticket
        return event
    return make


#: The seam's ``Event(...)``, with every argument positional.
new_event = _event_maker()


_current: contextvars.ContextVar[Event[Any] | None] = contextvars.ContextVar(
    "agentlib_current_event", default=None)


_current_app: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "agentlib_current_app", default=None)


def set_current_app(app: Any) -> None:
    """Called by the agent's task as it starts: whose topics a topic name means."""
    _current_app.set(app)


async def _send_to(channel: Any, key: Any, value: Any, partition: int | None,
                   timestamp: float | None, headers: Any, options: dict[str, Any]) -> Any:
    unknown = sorted(set(options) - {*_PASSED_OPTIONS, "schema", "force"})
    if unknown:
        raise TypeError(f"Event.send() got an unexpected keyword argument {unknown[0]!r}")
    if options.get("schema") is not None:
        raise TypeError("Event.send/forward: schema per message is not supported by "
                        "agentd; give the target topic its schema")
    if isinstance(channel, str):
        app = _current_app.get()
        if app is None:
            raise RuntimeError(f"event.send({channel!r}) outside an agent: pass a topic")
        channel = app.topic(channel)
    passed = {name: options[name] for name in _PASSED_OPTIONS if options.get(name) is not None}
    return await channel.send(key=key, value=value, partition=partition, headers=headers,
                              timestamp=timestamp, **passed)


def current_event() -> Event[Any] | None:
    """The event the running agent is processing (None outside an agent)."""
    return _current.get()


def set_current_event(event: Event[Any] | None) -> None:
    """Called by streams when they hand an event to the agent."""
    _current.set(event)
