"""Closing windows: stream time per partition, and the rows of stale windows.

Expiry runs on the write path of a windowed table, while a record of the partition is
processed (see the package docstring for why, and for what that means for a quiet
partition). :class:`Expiry` keeps, per partition, the latest timestamp a write used and
a heap of the windows that may still have rows; a write that moves stream time pops
what went stale, deletes those rows through the table's ``_expire_stored`` hook and
calls ``on_window_close`` once per deleted row.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import math
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentlib.events import Event, current_event
from agentlib.tables import runtime as runtimes
from agentlib.tables.windows.ranges import HoppingWindow, WindowRange

__all__ = ["Expiry", "WindowedTable", "stream_timestamp", "window_key"]

log = logging.getLogger(__name__)


class WindowedTable(runtimes.Table, Protocol):
    """What windows need of a table (an ``agentlib.tables.Table``): its stored rows.

    ``missing`` is what ``_get_stored`` returns for an absent row. ``_set_stored``
    checks Faust's co-partitioning rule on ``user_key``; ``_expire_stored`` removes a
    row of the processed record's partition without that check and returns its value
    (``missing`` if absent): a window closed by stream time belongs to some other key
    of the same partition.
    """

    @property
    def missing(self) -> object: ...

    @property
    def default(self) -> Callable[[], Any] | None: ...

    @property
    def on_window_close(self) -> Callable[..., Any] | None: ...

    def _get_stored(self, store_key: Any) -> Any: ...

    def _set_stored(self, user_key: Any, store_key: Any, value: Any) -> None: ...

    def _expire_stored(self, store_key: Any) -> Any: ...

    def _stored_items(self, partition: int | None = None
                      ) -> Iterator[tuple[int, Any, Any]]: ...


def window_key(stored_key: Any) -> tuple[Any, WindowRange] | None:
    """``(key, (start, end))`` of a stored window row, or None for another row.

    Stored keys come back JSON-decoded, so the tuple is a list ``[key, [start, end]]``.
    """
    if not isinstance(stored_key, list | tuple) or len(stored_key) != 2:
        return None
    key, bounds = stored_key
    if not isinstance(bounds, list | tuple) or len(bounds) != 2:
        return None
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds):
        return None
    return key, (float(bounds[0]), float(bounds[1]))


def stream_timestamp(event: Event[Any] | None = None) -> float:
    """The record's timestamp in seconds (Faust's ``event.message.timestamp``)."""
    event = event if event is not None else current_event()
    if event is None:
        raise RuntimeError("Operation outside of stream iteration")
    timestamp_ms = event.message.timestamp_ms
    return time.time() if timestamp_ms is None else timestamp_ms / 1000.0


def _hashable(key: Any) -> Hashable:
    """``key`` as a dict key of the expiry index (a list or record by its repr)."""
    try:
        hash(key)
    except TypeError:
        return (_hashable, repr(key))
    hashable: Hashable = key
    return hashable


@dataclass
class _OpenWindows:
    """One partition's windows that may still have rows, by end: what expiry walks.

    Built from the shard's rows when first needed and again when the shard object
    changes (the partition left this process and came back), so rows recovered from
    the changelog or written by a previous owner expire too.
    """

    shard: object
    ends: list[tuple[float, float]] = field(default_factory=list)  # heap of (end, start)
    keys: dict[WindowRange, dict[Hashable, Any]] = field(default_factory=dict)

    def add(self, key: Any, window_range: WindowRange) -> None:
        keys = self.keys.get(window_range)
        if keys is None:
            keys = self.keys[window_range] = {}
            heapq.heappush(self.ends, (window_range[1], window_range[0]))
        keys.setdefault(_hashable(key), key)

    def pop_closed(self, boundary: float) -> Iterator[tuple[WindowRange, list[Any]]]:
        """Remove and yield every window ending at or before ``boundary``, oldest first."""
        while self.ends and self.ends[0][0] <= boundary:
            end, start = heapq.heappop(self.ends)
            yield (start, end), list(self.keys.pop((start, end), {}).values())


class Expiry:
    """Stream time per partition and the closing of stale windows; one per windowed
    table, shared by the wrappers ``relative_to_*`` derives from it."""

    def __init__(self, table: WindowedTable, window: HoppingWindow) -> None:
        self.table = table
        self.window = window
        self.latest: dict[int, float] = {}
        self._open: dict[int, _OpenWindows] = {}
        self._callbacks: set[asyncio.Future[Any]] = set()

    def relative_now(self, event: Event[Any] | None = None) -> float:
        """The partition's stream time (at least the record's own), else the clock."""
        event = event if event is not None else current_event()
        if event is None:
            return time.time()
        own = stream_timestamp(event)
        return max(self.latest.get(event.message.partition, own), own)

    def live_ranges(self, partition: int, timestamp: float) -> list[WindowRange]:
        """The windows a write at ``timestamp`` goes to: those not yet closed."""
        ranges = self.window.ranges(timestamp)
        latest = self.latest.get(partition)
        if latest is None or self.window.expires is None:
            return ranges
        return [r for r in ranges if not self.window.stale(r[1], latest)]

    def after_write(self, partition: int, key: Any, ranges: list[WindowRange],
                    timestamp: float) -> None:
        """Note the rows written; if stream time moved, close what it made stale."""
        if self.window.expires is None:
            self.latest[partition] = max(self.latest.get(partition, timestamp), timestamp)
            return
        open_windows = self._open_windows(partition)
        for window_range in ranges:
            open_windows.add(key, window_range)
        if timestamp <= self.latest.get(partition, -math.inf):
            return
        self.latest[partition] = timestamp
        for window_range, keys in open_windows.pop_closed(self.window.stale_before(timestamp)):
            for closed_key in keys:
                self._close_row((closed_key, window_range))

    def _open_windows(self, partition: int) -> _OpenWindows:
        shard = runtimes.current().shard(self.table, partition)
        open_windows = self._open.get(partition)
        if open_windows is None or open_windows.shard is not shard:
            open_windows = self._open[partition] = _OpenWindows(shard)
            for _, stored_key, _ in self.table._stored_items(partition):
                parsed = window_key(stored_key)
                if parsed is not None:
                    open_windows.add(*parsed)
        return open_windows

    def _close_row(self, store_key: tuple[Any, WindowRange]) -> None:
        """Delete one expired row and report it; a row already gone is not reported."""
        table = self.table
        value = table._expire_stored(store_key)
        if value is table.missing:
            return
        callback = table.on_window_close
        if callback is None:
            return
        try:  # the row is gone either way: a failing callback must not fail the record
            result = callback(store_key, value)
        except Exception:
            log.exception("table %s: on_window_close%r failed", table.name, store_key)
            return
        if inspect.isawaitable(result):  # Faust awaits it; the write path cannot
            future = asyncio.ensure_future(result)
            self._callbacks.add(future)
            future.add_done_callback(self._callback_done)

    def _callback_done(self, future: asyncio.Future[Any]) -> None:
        self._callbacks.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("table %s: on_window_close failed", self.table.name,
                      exc_info=future.exception())
