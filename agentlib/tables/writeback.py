"""The write-back cache of an instance's tables: writes gather in a *flush window*, and
each flush stores every dirty shard once and produces one changelog row per updated key.

Why: producing each write to the changelog as it was made (a produce call, a mark
header and a held delivery per write) cost about a third of an instance's CPU per
record in ``bench/tables_inproc.py``, and a counter updated a hundred times between
two flushes needs only its last value in the changelog. Quix Streams does the same
(``PartitionTransactionCache``: a dict per partition and checkpoint, produced once per
updated key with the checkpoint's offsets in a header, every ``commit_interval``, 5 s
by default), and so does Kafka Streams' record cache.

What agentd keeps, unlike a checkpoint that commits whatever was processed: **a
record is done only when the flush holding its writes is delivered**. A write holds
its record's ticket (once per record and window); the flush that carries the window's
rows releases those tickets when the broker has acknowledged every row of it. The
worker acks only done records and the supervisor commits only acked offsets, so a
committed offset still implies its changelog writes are durable. Because a window's
records stay in flight, it is bounded by how many records it holds (``flush_records``,
well under the agent's ``max_in_flight``, or the instance would stop being fed before
the window fills) and by time (``interval``: what the window adds to commit latency
when input is slow).

A flush, for each shard with writes in the window:

1. the shard stores its pending rows and marks (one RocksDB write batch), *before*
   anything is produced: a crash in between leaves the shard ahead of its changelog,
   the case the marks handle (redelivered writes are skipped and their rows produced
   again, :meth:`~agentlib.tables.changelog.ChangelogRuntime.write`);
2. one row per key written in the window is produced to the shard's changelog
   partition: its latest value. The row of the window's last write goes last with its
   mark, the others as *partial* rows naming that mark (:mod:`agentlib.tables.replay`:
   a replay applies a flush whole or not at all).

Reads see the window: a RocksDB shard keeps the same rows pending until step 1, a
memory shard applies writes at once. Writes to a GlobalTable bypass the window (they
are produced as they are made, :mod:`agentlib.tables.changelog`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from agentlib.deliveries import RowsReport
from agentlib.sinks import produce_soon
from agentlib.tables.replay import MARK_HEADER, UPTO_HEADER, encode_mark
from agentlib.tables.runtime import Table
from agentlib.tables.shards import Mark, Shard

__all__ = ["FLUSH_INTERVAL", "FLUSH_ROWS", "Flush", "WriteBack"]

log = logging.getLogger("agentd.tables")

#: Seconds a flush window stays open at most (what it adds to an offset's commit when
#: input is slow; a full window flushes at once).
FLUSH_INTERVAL = 0.05
#: Keys a shard's window holds before it flushes whatever the time (bounds memory and
#: the RocksDB batch of an agent writing many keys per record; below the shard's own
#: ``PENDING_MAX``).
FLUSH_ROWS = 5_000


class Flush:
    """The rows one flush produced and the records waiting for them to be delivered."""

    __slots__ = ("left", "tickets")

    def __init__(self, tickets: list[Any]) -> None:
        self.tickets = tickets
        self.left = 0  # rows not reported yet; -1 once released

    def reported(self, error: BaseException | None) -> None:
        """One row's delivery report: the last one (or a failure) releases the records."""
        if error is None:
            self.delivered(1)
        elif self.left >= 0:
            self.release(error)

    def delivered(self, rows: int) -> None:
        """``rows`` more rows are delivered; the last one releases the records."""
        if self.left < 0:
            return
        self.left -= rows
        if self.left <= 0:
            self.release(None)

    def release(self, error: BaseException | None) -> None:
        """Every row is delivered (``error`` None) or one failed: the records stop
        waiting (a failure goes to each record's ``on_error`` policy, as a sink's)."""
        self.left = -1
        tickets, self.tickets = self.tickets, []
        if error is None:
            ledger: Any = None
            for ticket in tickets:  # ticket.ledger.delivered(ticket), one call less each
                if ticket.ledger is not ledger:
                    ledger = ticket.ledger
                    finish = ledger.finish_if_done
                ticket.pending -= 1
                finish(ticket)
            return
        by_ledger: dict[int, list[Any]] = {}
        for ticket in tickets:
            by_ledger.setdefault(id(ticket.ledger), []).append(ticket)
        for group in by_ledger.values():
            group[0].ledger.reported(group, error)


class _Window:
    """One shard's writes since its last flush: key → value, and the source topic and
    mark of the latest write (the one whose row goes last)."""

    __slots__ = ("last", "mark", "others", "rows", "table", "topic")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.rows: dict[bytes, bytes | None] = {}
        self.last: bytes | None = None  # the key of the latest write
        self.topic: str | None = None   # the source topic of the latest write
        self.mark: Mark = (-1, -1)      # the mark of the latest write
        #: the latest mark of each source topic written before a switch to another
        self.others: dict[str, Mark] = {}


class WriteBack:
    """The flush window of one process's table shards (all of them flush together).

    ``producer()`` is the changelog producer; ``note_offset(table, partition, offset)``
    learns where a delivered row landed (the shard holds every changelog row up to it).
    """

    def __init__(self, producer: Callable[[], Any],
                 note_offset: Callable[[str, int, int], None], *,
                 flush_records: int = 2048, flush_rows: int = FLUSH_ROWS,
                 interval: float = FLUSH_INTERVAL) -> None:
        self._producer = producer
        self._note_offset = note_offset
        self.flush_records = max(1, flush_records)
        self.flush_rows = max(1, flush_rows)
        self.interval = interval
        self._windows: dict[Shard, _Window] = {}
        self._tickets: list[Any] = []
        self._last_ticket: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._settle_of: dict[str, Callable[[Any], None]] = {}
        #: Flushes made and changelog rows produced (tests, bench/tables_inproc.py).
        self.flushes = 0
        self.rows_produced = 0

    @property
    def records(self) -> int:
        """Records whose writes the open window holds."""
        return len(self._tickets)

    def pending(self, shard: Shard) -> bool:
        """Whether ``shard`` has writes in the open window."""
        return shard in self._windows

    def add(self, table: Table, shard: Shard, key: bytes, value: bytes | None,
            topic: str, mark: Mark, ticket: Any) -> None:
        """One write (already applied to ``shard``) joins the window; ``ticket`` (the
        record's, None outside the ring) waits for the flush that carries it.

        A record's first write to a window that holds ``flush_records`` records
        flushes it first, so a record's writes stay in one flush (unless a shard's
        window reaches ``flush_rows`` keys meanwhile) and the agent goes on with the
        next records while the flush is delivered."""
        if ticket is not self._last_ticket and ticket is not None:  # a new record
            if len(self._tickets) >= self.flush_records:
                self.flush()
            self._last_ticket = ticket
            ticket.pending += 1  # ticket.ledger.hold_counted((ticket,)), without the calls
            self._tickets.append(ticket)
        window = self._windows.get(shard)
        if window is None:
            window = self._windows[shard] = _Window(table)
        if topic is not window.topic and topic != window.topic:  # rare: a source switch
            if window.topic is not None:
                window.others[window.topic] = window.mark
            window.topic = topic
        rows = window.rows
        rows[key] = value
        window.last, window.mark = key, mark
        if len(rows) >= self.flush_rows:
            self.flush()
        elif self._timer is None:
            self._arm()

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): flush at once
            self.flush()
            return
        self._timer = loop.call_later(self.interval, self._timed)

    def _timed(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Close the window: store each dirty shard, produce its rows, and let the
        window's records finish when every row is delivered. The whole window flushes
        at once: a record's writes may span shards and tables."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        windows, self._windows = self._windows, {}
        tickets, self._tickets = self._tickets, []
        self._last_ticket = None
        if not windows:
            if tickets:  # (cannot happen: a ticket is held only with a row)
                Flush(tickets).release(None)
            return
        for shard in windows:
            shard.flush()
        unit = Flush(tickets)
        unit.left = sum(len(window.rows) for window in windows.values())
        self.flushes += 1
        self.rows_produced += unit.left
        producer = self._producer()
        for shard, window in windows.items():
            self._produce(producer, shard, window, unit)

    def _produce(self, producer: Any, shard: Shard, window: _Window, unit: Flush) -> None:
        """Every row of ``window`` to ``shard``'s changelog partition, the last write's
        row last (see the module docstring): one ``send_rows`` call, whose rows are
        reported together (one callback object for the shard's rows, no entry per
        row), where the producer has it; else a delivery future per row."""
        table = window.table
        topic_name = table.changelog_topic_name
        partition = shard.partition
        rows, last = window.rows, window.last
        assert last is not None
        value, topic, mark = rows.pop(last), window.topic, window.mark
        end = f"{topic}\x1f{mark[0]}\x1f{mark[1]}"
        header = [(MARK_HEADER, f"\x1f{end}".encode())]  # every partial row's
        headers = [(MARK_HEADER, end.encode())]
        headers += [(UPTO_HEADER, encode_mark(other, at))
                    for other, at in window.others.items() if other != topic]
        send_rows = getattr(producer, "send_rows", None)
        if send_rows is not None:
            settle = self._settle_of.get(table.name)
            if settle is None:
                settle = self._settle_of[table.name] = partial(self._settled, table.name)
            unsent = send_rows(topic_name, partition, rows.items(), header,
                               (last, value, headers), settle, unit)
        else:
            unsent = [(key, row, header) for key, row in rows.items()]
            unsent.append((last, value, headers))
        for key, row, row_headers in unsent:  # (the local queue was full: these wait)
            delivery = produce_soon(producer, topic_name, key, row, row_headers,
                                    partition=partition)
            delivery.add_done_callback(partial(self._delivered, table.name, unit))

    def _delivered(self, table: str, unit: Flush, delivery: asyncio.Future[Any]) -> None:
        error = (asyncio.CancelledError() if delivery.cancelled()
                 else delivery.exception())
        if error is None:
            result = delivery.result()
            offset = getattr(result, "offset", None)
            partition = getattr(result, "partition", None)
            if isinstance(offset, int) and isinstance(partition, int):
                self._note_offset(table, partition, offset)
        unit.reported(error)

    def _settled(self, table: str, report: RowsReport) -> None:
        """The rows one ``send_rows`` sent of ``table`` are reported."""
        if report.last >= 0:
            self._note_offset(table, report.partition, report.last)
        unit: Flush = report.token
        if report.error is None:
            unit.delivered(report.sent)
        else:
            unit.reported(report.error)
