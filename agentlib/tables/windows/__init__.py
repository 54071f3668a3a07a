"""Windowed tables: ``table.tumbling(size)`` and ``table.hopping(size, step)``, as Faust's.

A windowed table keeps one row per key and window: ``page_views[view.id] += 1`` adds 1
to the row ``(view.id, (start, end))`` of every window that holds the event's time, so
"views per page per 10 seconds" is one ``+=``. Those rows are ordinary rows of the
underlying table, written through its hooks (:class:`WindowedTable`): they live in the
processed record's partition, are changelogged and recovered like any other row, and
Faust's co-partitioning rule applies to the key the agent wrote.

*Which* time picks the windows is the wrapper's ``relative_to`` choice (Faust's): the
record's timestamp by default and with ``relative_to_stream()``, a field of the value
with ``relative_to_field(Record.field)``, the partition's stream time with
``relative_to_now()`` (the wall clock outside an agent).

Expiry (``expires=``) runs on the write path, against *stream time*: per partition, the
latest timestamp a write used. When a write moves it so far that a window is stale
(Faust's rule: the window ended at or before the start of the window current
``expires`` seconds ago), that window's rows are deleted and ``table.on_window_close(
(key, (start, end)), value)`` is called once per row, while the same record is
processed. The deletes are therefore written, changelogged and marked like the record's
own writes, and a redelivered record closes the same windows again. Two differences
from Faust, both for "once per window": Faust cleans up from a timer against the wall
clock, so here a partition that gets no more records keeps its last windows until its
next write; and a write for a window that has already closed is dropped (Faust writes
it, and its next cleanup deletes the row without calling ``on_window_close``).

:mod:`.ranges` is the window arithmetic (Faust's), :mod:`.expiry` the per-partition
stream time and the closing of windows, :mod:`.wrapper` what the agent holds
(``WindowWrapper``, ``WindowSet``, the key/item/value views).
"""

from agentlib.tables.windows.expiry import WindowedTable, window_key
from agentlib.tables.windows.ranges import HoppingWindow, Seconds, TumblingWindow, WindowRange
from agentlib.tables.windows.wrapper import (
    WindowedItemsView,
    WindowedKeysView,
    WindowedValuesView,
    WindowSet,
    WindowWrapper,
)

__all__ = ["HoppingWindow", "Seconds", "TumblingWindow", "WindowRange", "WindowSet",
           "WindowWrapper", "WindowedItemsView", "WindowedKeysView", "WindowedTable",
           "WindowedValuesView", "window_key"]
