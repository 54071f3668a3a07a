"""The table runtime of an agentd instance: shards on disk, changelog, recovery, marks.

What one write does (:meth:`ChangelogRuntime.write`), while the agent processes a
record of source partition *p*:

1. The shard of *p* applies it together with the record's *mark* (source offset, and
   the write's index within that record's processing). A RocksDB shard keeps it
   pending in memory (reads see it) until the next flush stores the window's rows and
   marks as one write batch.
2. It joins the *flush window* (:mod:`agentlib.tables.writeback`): at the window's
   end each key written is produced once to the table's changelog, partition *p*,
   with its latest mark in a header, and the records of the window are held until the
   broker acknowledged every row of the flush. The worker acks a record only when its
   event is done, and the supervisor commits only acked offsets: so a committed source
   offset implies its changelog writes are durable, the same rule sinks follow.
3. A record the shard has already applied (a redelivery after a crash: its mark is not
   newer than the shard's) changes nothing; the row's current value joins the window
   instead, so a changelog that missed the first write catches up with the shard.

The window flushes when it holds ``flush_records`` records, a shard's ``FLUSH_ROWS``
keys, or ``FLUSH_INTERVAL`` after its first write, and when the instance asks
(:meth:`ChangelogRuntime.flush`: before a transaction commits, on release and close).

Opening a shard (:meth:`ChangelogRuntime.shard`) replays the changelog from the
offset the shard last recorded, so a restart reads only the tail and an empty
``table_dir`` rebuilds everything. Rows this shard wrote itself (their mark is not
newer than the shard's own mark) are not replayed over newer values, and a flush is
applied whole or not at all (:mod:`agentlib.tables.replay`). A replay logs
its progress (percent of the offsets to replay, rows/s) every
``progress_log_every`` seconds and calls ``on_progress`` about once a second: the
instance's loop is busy replaying, so its periodic status report cannot run meanwhile.
:meth:`ChangelogRuntime.status` is what that report says of each shard.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from agentlib.events import Event
from agentlib.sinks import produce_soon
from agentlib.tables.hostcopy import HostCopyReader, host_copy_path
from agentlib.tables.replay import (
    MARK_HEADER,
    Recovery,
    ReplayState,
    apply_messages,
    decode_mark,
    encode_mark,
)
from agentlib.tables.runtime import Table
from agentlib.tables.shards import MemoryShard, RocksShard, Shard
from agentlib.tables.writeback import WriteBack

__all__ = ["MARK_HEADER", "ChangelogRuntime", "Recovery", "ShardReleased", "ShardStatus",
           "apply_messages",
           "decode_mark",
           "encode_mark"]

log = logging.getLogger("agentd.tables")

#: Changelog rows one ``consume`` of the replay asks for, applied as one RocksDB write
#: batch. bench/tables.py rebuilding 1M rows: 2,000 ~325k rows/s, 10,000 ~550k,
#: 50,000 ~400k.
RECOVERY_BATCH = 10_000
#: Seconds one ``consume`` of the replay waits for a batch (see ``_replay``).
RECOVERY_WAIT = 0.2
#: Seconds between two progress lines of one replay in the log.
PROGRESS_LOG_EVERY = 2.0
#: Seconds between two ``on_progress`` calls during a replay.
PROGRESS_REPORT_EVERY = 1.0


class ShardReleased(RuntimeError):
    """A read or write of a table partition this instance released: its records are
    another instance's now, so its rows are too (a ``noack`` agent that acked a record
    and wrote after its partition moved)."""

    def __init__(self, table: str, partition: int) -> None:
        super().__init__(f"table {table}[{partition}]: partition {partition} moved to another "
                         f"instance; a read or write after its record was acked cannot be "
                         f"served here")


class ShardStatus(NamedTuple):
    """One open shard as status shows it (``agentd status``'s tables rows)."""

    table: str
    partition: int
    state: str            # "active" | "recovering"
    keys: int
    keys_estimated: bool  # RocksDB's estimate (see RocksShard), else exact
    disk_bytes: int
    changelog_offset: int  # the highest changelog offset the shard holds (-1: none)
    changelog_lag: int     # changelog offsets known to exist that it does not hold yet
    recovered_rows: int    # changelog rows this process replayed into it


class ChangelogRuntime:
    """Shards by (table, partition) in ``table_dir``; writes also go to the changelog.

    ``producer`` is the app's producer (``send_soon``); ``consumer_factory`` makes a
    confluent-kafka ``Consumer`` for recovery from a config dict.
    """

    def __init__(self, table_dir: Path, *, producer: Callable[[], Any],
                 consumer_settings: dict[str, Any],
                 consumer_factory: Callable[[dict[str, Any]], Any] | None = None,
                 default_store: str = "rocksdb://",
                 progress_log_every: float = PROGRESS_LOG_EVERY,
                 flush_records: int = 2048) -> None:
        self.table_dir = table_dir
        self._producer = producer
        self._consumer_settings = consumer_settings
        self._consumer_factory = consumer_factory
        self._default_store = default_store
        self._shards: dict[tuple[str, int], Shard] = {}
        #: partitions released to another owner and not claimed back (see :meth:`claim`)
        self._released: set[int] = set()
        self._host_copies: dict[str, HostCopyReader] = {}
        #: per shard: [the event that wrote it last, the index of that write]
        self._writing: dict[Shard, list[Any]] = {}
        #: The flush window (writes since the last flush, and the records they hold).
        self.window = WriteBack(producer, self._note_offset, flush_records=flush_records)
        self.recoveries: dict[tuple[str, int], Recovery] = {}
        self.redelivered_writes = 0
        self.progress_log_every = progress_log_every
        #: Called when a replay starts, about once a second while it runs, and when the
        #: shard is open and caught up (the instance sends its status report).
        self.on_progress: Callable[[], None] | None = None
        #: The replay under way: (table name, shard, its counts).
        self._recovering: tuple[str, Shard, Recovery] | None = None
        #: Changelog rows replayed per (table, partition) in this process, all openings.
        self.recovered_rows: dict[tuple[str, int], int] = {}

    # -- TableRuntime -----------------------------------------------------------

    def shard(self, table: Table, partition: int) -> Shard:
        if table.is_global:
            return self.host_copy(table)  # type: ignore[return-value]
        shard = self._shards.get((table.name, partition))
        if shard is None:
            if partition in self._released:
                raise ShardReleased(table.name, partition)
            shard = self.open(table, partition)
        return shard

    def local_shards(self, table: Table) -> list[Shard]:
        if table.is_global:
            return [self.host_copy(table)]  # type: ignore[list-item]
        return [shard for (name, _), shard in self._shards.items() if name == table.name]

    def write(self, table: Table, shard: Shard, event: Event[Any], key: bytes,
              value: bytes | None) -> None:
        if isinstance(shard, HostCopyReader):
            self._write_global(table, shard, event, key, value)
            return
        record = event.message
        topic = record.topic
        # The number of this write among the writes ``event`` made to ``shard``.
        writing = self._writing.get(shard)
        if writing is None:  # the shard's first write since it opened (or was released)
            partition = shard.partition
            if partition in self._released \
                    or self._shards.get((table.name, partition), shard) is not shard:
                raise ShardReleased(table.name, partition)
            writing = self._writing[shard] = [event, 0]
        elif writing[0] is event:
            writing[1] += 1
        else:
            writing[0], writing[1] = event, 0
        mark = (record.offset, writing[1])
        applied = shard.mark(topic)
        if applied is not None and mark <= applied:
            # A redelivery: this write is in the shard already. Produce the row as it
            # is, in case the changelog never got the first write.
            self.redelivered_writes += 1
            value = shard.get(key)
        else:
            shard.write(key, value, topic, mark)
        self.window.add(table, shard, key, value, topic, mark, event._ticket)

    def flush(self) -> None:
        """Close the flush window now: store every dirty shard (one RocksDB write batch
        each) and produce one changelog row per key written; the window's records are
        done once the rows are delivered. The instance calls it before a transaction
        commits; release and close call it too."""
        self.window.flush()

    # -- ownership -------------------------------------------------------------

    def open(self, table: Table, partition: int) -> Shard:
        """Open the shard of ``partition`` and catch it up with its changelog (the
        partition is this instance's: :meth:`claim`)."""
        self._released.discard(partition)
        store = table.store or self._default_store
        shard: Shard
        if store.startswith("memory"):
            shard = MemoryShard(partition)
        else:
            shard = RocksShard(self.table_dir / table.name / str(partition), partition)
        self.recoveries[(table.name, partition)] = self.recover(table, shard)
        self._shards[(table.name, partition)] = shard
        self._report()  # recovering → active
        return shard

    def release(self, partition: int) -> None:
        """Close every shard of ``partition`` (it moved to another owner), after
        flushing the window if they have writes in it (the daemon sends ``RELEASE``
        once every record of the partition is acked, so normally they have none)."""
        keys = [k for k in self._shards if k[1] == partition]
        if any(self.window.pending(self._shards[k]) for k in keys):
            self.window.flush()
        for key in keys:
            shard = self._shards.pop(key)
            self._writing.pop(shard, None)
            shard.close()
        self._released.add(partition)

    def claim(self, partition: int) -> None:
        """``partition`` is this instance's (again): its shards may open."""
        self._released.discard(partition)

    def close(self) -> None:
        """Close every shard (the instance is stopping), the window flushed first."""
        self.window.flush()
        for partition in {p for _, p in self._shards}:
            self.release(partition)
        for name, copy in self._host_copies.items():
            copy.close()
            shutil.rmtree(self._reader_dir(name), ignore_errors=True)
        self._host_copies.clear()

    # -- GlobalTables ---------------------------------------------------------------

    def host_copy(self, table: Table) -> HostCopyReader:
        """This process's read-only view of the host's copy of a GlobalTable."""
        copy = self._host_copies.get(table.name)
        if copy is None:
            copy = self._host_copies[table.name] = HostCopyReader(
                host_copy_path(self.table_dir / table.name), self._reader_dir(table.name))
        return copy

    def _reader_dir(self, table: str) -> Path:
        """RocksDB secondaries keep their own info logs: one directory per process."""
        return self.table_dir / table / "readers" / str(os.getpid())

    def _write_global(self, table: Table, copy: HostCopyReader, event: Event[Any],
                      key: bytes, value: bytes | None) -> None:
        """Produce to the changelog (the keeper applies it to the host copy); read from
        the overlay meanwhile. Partitioned by key: every host reads every partition."""
        entry = copy.wrote(key, value)
        delivery = produce_soon(self._producer(), table.changelog_topic_name, key, value, None)
        delivery.add_done_callback(lambda done: _note_global(entry, done))
        ticket: Any = event._ticket
        if ticket is not None:
            ticket.ledger.hold([ticket], delivery)

    # -- status ------------------------------------------------------------------

    def status(self) -> list[ShardStatus]:
        """Every open shard, and the one being replayed (cheap: no scan of any shard)."""
        rows = [self._status(name, shard, "active", self.recoveries.get((name, partition)))
                for (name, partition), shard in sorted(self._shards.items())]
        if self._recovering is not None:
            name, shard, stats = self._recovering
            rows.append(self._status(name, shard, "recovering", stats))
        return rows

    def _status(self, name: str, shard: Shard, state: str,
                stats: Recovery | None) -> ShardStatus:
        # The shard holds every offset below max(its own offset + 1, the replay's start):
        # what precedes the start is compacted away or already applied.
        held = shard.changelog_offset + 1
        if stats is not None:
            held = max(held, stats.position + 1, stats.start)
        lag = max(0, stats.high - held) if stats is not None else 0
        return ShardStatus(name, shard.partition, state, shard.key_count(),
                           shard.keys_estimated, shard.disk_bytes(), shard.changelog_offset,
                           lag, self.recovered_rows.get((name, shard.partition), 0))

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress()

    # -- recovery ----------------------------------------------------------------

    def recover(self, table: Table, shard: Shard) -> Recovery:
        """Apply the changelog of ``shard``'s partition from its recorded offset on."""
        from confluent_kafka import TopicPartition

        started = time.monotonic()
        topic = table.changelog_topic_name
        consumer = self._new_consumer()
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, shard.partition), timeout=30.0)
            stats = Recovery(max(shard.changelog_offset + 1, low), high)
            if stats.start < high:
                log.info("table %s[%d]: replaying changelog offsets %d..%d", table.name,
                         shard.partition, stats.start, high - 1)
                consumer.assign([TopicPartition(topic, shard.partition, stats.start)])
                self._recovering = (table.name, shard, stats)
                self._report()
                self._replay(consumer, table.name, shard, stats)
        finally:
            self._recovering = None
            consumer.close()
        stats.seconds = time.monotonic() - started
        if stats.rows:
            log.info("table %s[%d]: recovered %d rows in %.2fs (%d already held)",
                     table.name, shard.partition, stats.rows, stats.seconds, stats.skipped)
        return stats

    def _progress(self, name: str, shard: Shard, stats: Recovery, started: float,
                  due: list[float]) -> None:
        """After a replayed batch: a log line and an ``on_progress`` call when due
        (``due``: the monotonic times the next of each is due, updated here)."""
        now = time.monotonic()
        if now >= due[0]:
            due[0] = now + self.progress_log_every
            rate = (stats.rows + stats.skipped) / max(now - started, 1e-6)
            log.info("table %s[%d]: recovering, %.0f%% of offsets %d..%d, %.0f rows/s",
                     name, shard.partition, stats.percent, stats.start, stats.high - 1, rate)
        if now >= due[1]:
            due[1] = now + PROGRESS_REPORT_EVERY
            self._report()

    def _replay(self, consumer: Any, name: str, shard: Shard, stats: Recovery) -> None:
        """Apply offsets ``stats.start`` to ``stats.high - 1``, a RocksDB write batch per
        fetch.

        ``consume(n)`` returns only when it has ``n`` messages or its timeout passed,
        so it is asked for no more than are left before ``high`` (a fixed batch made
        every partition wait out the timeout on its last batch: 1 s per shard). Where
        the offsets have gaps (compaction, transaction markers) fewer are there than
        asked for; the partition's end-of-file event, or the short timeout, ends that.
        """
        state = ReplayState()
        high = stats.high
        position = stats.start - 1
        started = time.monotonic()
        due = [started + self.progress_log_every, started + PROGRESS_REPORT_EVERY]
        key = (name, shard.partition)
        while position < high - 1:
            messages = consumer.consume(min(RECOVERY_BATCH, high - 1 - position),
                                        RECOVERY_WAIT)
            before = stats.rows
            applied, at_end = apply_messages(shard, messages, state, stats)
            position = max(position, applied)
            stats.position = position
            self.recovered_rows[key] = self.recovered_rows.get(key, 0) + stats.rows - before
            self._progress(name, shard, stats, started, due)
            if at_end:
                break
        state.drop_unfinished()  # this process owns the shard now: nobody finishes them
        if state.dropped:
            # A previous owner died mid-flush: none of those rows' records were acked,
            # so they are redelivered and written again; applying part of a flush would
            # count some of them twice.
            log.info("table %s[%d]: %d changelog rows of unfinished flushes dropped",
                     name, shard.partition, state.dropped)

    def _new_consumer(self) -> Any:
        settings = {"group.id": "agentd-table-recovery", "enable.auto.commit": False,
                    "enable.partition.eof": True, "auto.offset.reset": "earliest",
                    # librdkafka waits 1 s before fetching again once its queue holds
                    # 100,000 messages: a replay drains it long before that (as the
                    # supervisor's consumer does, see docs/config.md)
                    "fetch.queue.backoff.ms": 50,
                    **self._consumer_settings}
        if self._consumer_factory is not None:
            return self._consumer_factory(settings)
        from confluent_kafka import Consumer

        return Consumer(settings)

    # -- writes ----------------------------------------------------------------

    def _note_offset(self, table: str, partition: int, offset: int) -> None:
        """A changelog row of ``table`` was delivered at ``offset``: its open shard
        holds every row up to it (it wrote them)."""
        shard = self._shards.get((table, partition))
        if shard is not None and offset > shard.changelog_offset:
            shard.changelog_offset = offset


def _note_global(entry: list[Any], delivery: Any) -> None:
    """The overlay entry of a GlobalTable write learns where its row landed."""
    if delivery.cancelled() or delivery.exception() is not None:
        return
    result = delivery.result()
    partition, offset = getattr(result, "partition", None), getattr(result, "offset", None)
    if isinstance(partition, int) and isinstance(offset, int):
        entry[1], entry[2] = partition, offset
