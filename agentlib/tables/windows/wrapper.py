"""What an agent holds of a windowed table: :class:`WindowWrapper` (``table.tumbling(10)``),
the :class:`WindowSet` of one key (``wrapper[key]``) and the views of
``wrapper.keys()``, ``items()`` and ``values()``, as Faust's ``faust.tables.wrappers``.

Every window row is read and written through the table's stored-row hooks under the key
``(key, (start, end))``; the wrapper adds only which windows a timestamp picks and the
expiry bookkeeping after each write (:mod:`agentlib.tables.windows.expiry`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from agentlib.events import Event, current_event
from agentlib.fields import FieldDescriptor
from agentlib.tables.windows.expiry import Expiry, WindowedTable, stream_timestamp, window_key
from agentlib.tables.windows.ranges import HoppingWindow, Seconds, WindowRange

__all__ = ["RelativeHandler", "WindowSet", "WindowWrapper", "WindowedItemsView",
           "WindowedKeysView", "WindowedValuesView"]

#: What ``relative_to_*`` reads a timestamp with: the event (None outside an agent).
RelativeHandler = Callable[[Event[Any] | None], Any]


def _seconds(timestamp: Any) -> float:
    """A relative_to value (seconds, datetime, or ISO-8601 text) in seconds."""
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp)
    if isinstance(timestamp, datetime):
        return timestamp.timestamp()
    return float(timestamp)



class WindowSet:
    """The windows of one key (``wrapper[key]``): pick one with a timestamp.

    ``+=`` and the other in-place operators apply to every window holding the event's
    time; ``current()``, ``now()``, ``value()`` and ``delta()`` read one window.
    """

    def __init__(self, key: Any, wrapper: WindowWrapper, event: Event[Any] | None = None
                 ) -> None:
        self.key = key
        self.wrapper = wrapper
        self.event = event

    @property
    def table(self) -> WindowedTable:
        return self.wrapper.table

    def apply(self, op: Callable[[Any, Any], Any], value: Any,
              event: Event[Any] | None = None) -> WindowSet:
        """``row = op(row, value)`` in every window holding the event's time."""
        self.wrapper._apply(self.key, op, value, event or self.event)
        return self

    def value(self, event: Event[Any] | None = None) -> Any:
        """The window current at the wrapper's ``relative_to`` time."""
        timestamp = self.wrapper.get_timestamp(event or self.event)
        return self.wrapper._read(self.key, self.wrapper.window.current(timestamp))

    def now(self) -> Any:
        """The earliest window holding "now": the partition's stream time in an
        agent, the wall clock outside one (Faust's ``_relative_now``)."""
        now = self.wrapper._expiry.relative_now(self.event)
        return self.wrapper._read(self.key, self.wrapper.window.earliest(now))

    def current(self, event: Event[Any] | None = None) -> Any:
        """The window current at the record's own timestamp."""
        timestamp = stream_timestamp(event or self.event)
        return self.wrapper._read(self.key, self.wrapper.window.current(timestamp))

    def delta(self, d: Seconds, event: Event[Any] | None = None) -> Any:
        """The window current ``d`` seconds before the record's timestamp."""
        window = self.wrapper.window
        return self.wrapper._read(self.key, window.delta(stream_timestamp(event or self.event), d))

    def __getitem__(self, w: Any) -> Any:
        if isinstance(w, Event):  # wrapper[key][event]: the same key, another event
            return type(self)(self.key, self.wrapper, w)
        return self.wrapper._read(self.key, tuple(w))

    def __setitem__(self, w: Any, value: Any) -> None:
        if isinstance(w, Event):
            raise NotImplementedError("Cannot set WindowSet key, when key is an event")
        self.table._set_stored(self.key, (self.key, tuple(w)), value)

    def __delitem__(self, w: Any) -> None:
        if isinstance(w, Event):
            raise NotImplementedError("Cannot delete WindowSet key, when key is an event")
        self.table._set_stored(self.key, (self.key, tuple(w)), None)

    def _unsupported(self, operation: str) -> Any:
        raise NotImplementedError(f"Accessing {operation} on a WindowSet is not implemented. "
                                  f"Try using the underlying table directly")

    def keys(self) -> Any:
        return self._unsupported("keys")

    def items(self) -> Any:
        return self._unsupported("items")

    def values(self) -> Any:
        return self._unsupported("values")

    def __iadd__(self, other: Any) -> WindowSet:
        return self.apply(operator.add, other)

    def __isub__(self, other: Any) -> WindowSet:
        return self.apply(operator.sub, other)

    def __imul__(self, other: Any) -> WindowSet:
        return self.apply(operator.mul, other)

    def __itruediv__(self, other: Any) -> WindowSet:
        return self.apply(operator.truediv, other)

    def __ifloordiv__(self, other: Any) -> WindowSet:
        return self.apply(operator.floordiv, other)

    def __imod__(self, other: Any) -> WindowSet:
        return self.apply(operator.mod, other)

    def __ipow__(self, other: Any) -> WindowSet:
        return self.apply(operator.pow, other)

    def __ilshift__(self, other: Any) -> WindowSet:
        return self.apply(operator.lshift, other)

    def __irshift__(self, other: Any) -> WindowSet:
        return self.apply(operator.rshift, other)

    def __iand__(self, other: Any) -> WindowSet:
        return self.apply(operator.and_, other)

    def __ixor__(self, other: Any) -> WindowSet:
        return self.apply(operator.xor, other)

    def __ior__(self, other: Any) -> WindowSet:
        return self.apply(operator.or_, other)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: table={self.table} key={self.key!r}>"


class _WindowedView:
    """``wrapper.items()`` and friends: the rows of one window, picked as Faust picks
    it (the wrapper's ``relative_to`` time by default; ``now()``, ``current()``,
    ``delta(d)`` as on a WindowSet). Keys without a row in that window are left out."""

    def __init__(self, wrapper: WindowWrapper, event: Event[Any] | None = None) -> None:
        self._wrapper = wrapper
        self.event = event

    def _pick(self, key: Any, value: Any) -> Any:
        return key, value

    def _rows(self, window_range: WindowRange) -> Iterator[Any]:
        for key, value in self._wrapper._items_in(window_range):
            yield self._pick(key, value)

    def __iter__(self) -> Iterator[Any]:
        timestamp = self._wrapper.get_timestamp(self.event)
        return self._rows(self._wrapper.window.current(timestamp))

    def __len__(self) -> int:
        return len(self._wrapper)

    def now(self) -> Iterator[Any]:
        now = self._wrapper._expiry.relative_now(self.event)
        return self._rows(self._wrapper.window.earliest(now))

    def current(self, event: Event[Any] | None = None) -> Iterator[Any]:
        timestamp = stream_timestamp(event or self.event)
        return self._rows(self._wrapper.window.current(timestamp))

    def delta(self, d: Seconds, event: Event[Any] | None = None) -> Iterator[Any]:
        timestamp = stream_timestamp(event or self.event)
        return self._rows(self._wrapper.window.delta(timestamp, d))


class WindowedItemsView(_WindowedView):
    """``wrapper.items()``: ``(key, value)`` of the rows of one window."""


class WindowedKeysView(_WindowedView):
    """``wrapper.keys()``: the keys with a row in one window."""

    def _pick(self, key: Any, value: Any) -> Any:
        return key


class WindowedValuesView(_WindowedView):
    """``wrapper.values()``: the values of the rows of one window."""

    def _pick(self, key: Any, value: Any) -> Any:
        return value


class WindowWrapper:
    """A table seen through windows: ``wrapper[key]`` is a :class:`WindowSet`.

    ``relative_to_now()``, ``relative_to_stream()`` and ``relative_to_field(f)`` return
    new wrappers over the same table, window and expiry state.
    """

    def __init__(self, table: WindowedTable, window: HoppingWindow, *,
                 relative_to: RelativeHandler | None = None,
                 expiry: Expiry | None = None) -> None:
        self.table = table
        self.window = window
        self._expiry = expiry if expiry is not None else Expiry(table, window)
        self.get_relative_timestamp = relative_to

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.table.name} {self.window!r}>"

    @property
    def name(self) -> str:
        return self.table.name

    # -- time -----------------------------------------------------------------------

    def clone(self, relative_to: RelativeHandler | None) -> WindowWrapper:
        """This wrapper with another time-relativity (the state is shared)."""
        return type(self)(self.table, self.window, relative_to=relative_to,
                          expiry=self._expiry)

    def relative_to(self, ts: Any) -> WindowWrapper:
        """Windows picked by ``ts``: seconds, a datetime, a field, or a callable."""
        if isinstance(ts, FieldDescriptor):
            return self.relative_to_field(ts)
        if isinstance(ts, datetime | int | float):
            fixed = _seconds(ts)
            return self.clone(lambda event: fixed)
        if callable(ts):
            return self.clone(ts)
        raise TypeError(f"relative_to cannot be {type(ts).__name__}")

    def relative_to_now(self) -> WindowWrapper:
        """Windows picked by "now": the partition's stream time in an agent."""
        return self.clone(self._expiry.relative_now)

    def relative_to_stream(self) -> WindowWrapper:
        """Windows picked by the record's timestamp (the default)."""
        return self.clone(stream_timestamp)

    def relative_to_field(self, field: FieldDescriptor | Any) -> WindowWrapper:
        """Windows picked by a field of the record's value (``Record.created``):
        seconds, a datetime or ISO-8601 text. (``| Any``: to a type checker
        ``Record.created`` reads as the field's value type, as for ``group_by``.)"""
        if not isinstance(field, FieldDescriptor):
            raise TypeError(f"relative_to_field needs a Record field (Model.field), "
                            f"not {field!r}")

        def from_field(event: Event[Any] | None) -> Any:
            if event is None:
                raise RuntimeError("Operation outside of stream iteration")
            return field.getattr(event.value)
        return self.clone(from_field)

    def get_timestamp(self, event: Event[Any] | None = None) -> float:
        """The time that picks windows for ``event`` (default: the current one)."""
        event = event if event is not None else current_event()
        if self.get_relative_timestamp is None:
            return stream_timestamp(event)
        return _seconds(self.get_relative_timestamp(event))

    # -- the mapping ----------------------------------------------------------------

    def __getitem__(self, key: Any) -> WindowSet:
        return WindowSet(key, self, current_event())

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, WindowSet):  # the tail of ``wrapper[key] += n``: applied
            return
        self._apply(key, lambda _old, new: new, value, None, read=False)

    def __delitem__(self, key: Any) -> None:
        self._apply(key, lambda _old, _new: None, None, None, read=False)

    def __contains__(self, key: Any) -> bool:
        window_range = self.window.current(self.get_timestamp())
        return self.table._get_stored((key, window_range)) is not self.table.missing

    def __iter__(self) -> Iterator[Any]:
        return iter(self._all_keys())

    def __len__(self) -> int:
        return len(self._all_keys())

    def keys(self) -> WindowedKeysView:
        return WindowedKeysView(self)

    def items(self, event: Event[Any] | None = None) -> WindowedItemsView:
        return WindowedItemsView(self, event or current_event())

    def values(self, event: Event[Any] | None = None) -> WindowedValuesView:
        return WindowedValuesView(self, event or current_event())

    # -- rows -----------------------------------------------------------------------

    def _apply(self, key: Any, op: Callable[[Any, Any], Any], value: Any,
               event: Event[Any] | None, *, read: bool = True) -> None:
        """``row = op(row, value)`` in every open window holding the event's time.

        ``event`` only picks the time; the rows go to the partition of the record being
        processed, as every table write does.
        """
        processed = current_event()
        if processed is None:
            raise RuntimeError(f"table {self.name!r}: cannot modify a table outside of an "
                               f"agent's stream iteration (Faust's rule)")
        timestamp = self.get_timestamp(event or processed)
        partition = processed.message.partition
        ranges = self._expiry.live_ranges(partition, timestamp)
        for window_range in ranges:
            store_key = (key, window_range)
            old = self._read(key, window_range) if read else None
            self.table._set_stored(key, store_key, op(old, value))
        self._expiry.after_write(partition, key, ranges, timestamp)

    def _read(self, key: Any, window_range: Any) -> Any:
        """The row of ``key`` in one window, else the table's default (KeyError)."""
        store_key = (key, window_range)
        value = self.table._get_stored(store_key)
        if value is not self.table.missing:
            return value
        if self.table.default is None:
            raise KeyError(store_key)
        return self.table.default()

    def _items_in(self, window_range: WindowRange) -> Iterator[tuple[Any, Any]]:
        for _, stored_key, value in self.table._stored_items():
            parsed = window_key(stored_key)
            if parsed is not None and parsed[1] == window_range:
                yield parsed[0], value

    def _all_keys(self) -> list[Any]:
        """Every key with a row in some window, once each (a walk over the rows)."""
        seen: dict[str, Any] = {}
        for _, stored_key, _ in self.table._stored_items():
            parsed = window_key(stored_key)
            if parsed is not None:
                seen.setdefault(repr(parsed[0]), parsed[0])
        return list(seen.values())
