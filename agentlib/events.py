"""``Event``: one decoded message as the agent sees it, and ``current_event()``.

An Event pairs the decoded key and value with the raw record it came from (so the
worker can ack it by offset) and with the request/reply addressing of an ``ask``.
Acking is delegated to a ticket the seam attaches: the Event itself knows nothing
about offsets or sinks.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from agentlib.rawrecord import RawRecord

__all__ = ["Event", "Ticket", "current_event"]

T = TypeVar("T")


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


def current_event() -> Event[Any] | None:
    """The event the running agent is processing (None outside an agent)."""
    return _current.get()


def set_current_event(event: Event[Any] | None) -> None:
    """Called by streams when they hand an event to the agent."""
    _current.set(event)
