"""The table runtime of an agentd instance: shards on disk, changelog, recovery, marks.

What one write does (:meth:`ChangelogRuntime.write`), while the agent processes a
record of source partition *p*:

1. The shard of *p* applies it together with the record's *mark* (source offset, and
   the write's index within that record's processing), in one atomic write.
2. It is produced to the table's changelog, partition *p*, with the mark in a header;
   the record's event is held until the broker acknowledged it. The worker acks a
   record only when its event is done, and the supervisor commits only acked offsets:
   so a committed source offset implies its changelog writes are durable, the same
   rule sinks follow.
3. A record the shard has already applied (a redelivery after a crash: its mark is not
   newer than the shard's) changes nothing; the row's current value is produced again
   instead, so a changelog that missed the first write catches up with the shard.

Opening a shard (:meth:`ChangelogRuntime.shard`) replays the changelog from the
offset the shard last recorded, so a restart reads only the tail and an empty
``table_dir`` rebuilds everything. Rows this shard wrote itself (their mark is not
newer than the shard's own mark) are not replayed over newer values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentlib.events import Event
from agentlib.sinks import produce_soon
from agentlib.tables.runtime import Table
from agentlib.tables.shards import Mark, MemoryShard, RocksShard, Shard

__all__ = ["MARK_HEADER", "ChangelogRuntime", "Recovery", "decode_mark", "encode_mark"]

log = logging.getLogger("agentd.tables")

#: The changelog header carrying the mark of the write: ``topic \x1f offset \x1f index``.
MARK_HEADER = "agentd-mark"
_SEP = "\x1f"
_SEP_BYTES = _SEP.encode()
#: Changelog rows one ``consume`` of the replay asks for, applied as one RocksDB write
#: batch. bench/tables.py rebuilding 1M rows: 2,000 ~325k rows/s, 10,000 ~550k,
#: 50,000 ~400k.
RECOVERY_BATCH = 10_000
#: Seconds one ``consume`` of the replay waits for a batch (see ``_replay``).
RECOVERY_WAIT = 0.2
#: librdkafka's "reached the end of the partition" event (``KafkaError._PARTITION_EOF``).
_PARTITION_EOF = -191


def encode_mark(topic: str, mark: Mark) -> bytes:
    """The header value for a write made by ``topic``'s record at ``mark``."""
    return f"{topic}{_SEP}{mark[0]}{_SEP}{mark[1]}".encode()


def decode_mark(data: bytes) -> tuple[str, Mark] | None:
    """``(topic, mark)`` from a header value; None if it is not one."""
    try:
        topic, offset, index = data.decode().split(_SEP)
        return topic, (int(offset), int(index))
    except ValueError:
        return None


class Recovery:
    """Counts of one shard's catch-up from its changelog (for logs and status)."""

    __slots__ = ("rows", "seconds", "skipped")

    def __init__(self) -> None:
        self.rows = 0
        self.skipped = 0
        self.seconds = 0.0


class ChangelogRuntime:
    """Shards by (table, partition) in ``table_dir``; writes also go to the changelog.

    ``producer`` is the app's producer (``send_soon``); ``consumer_factory`` makes a
    confluent-kafka ``Consumer`` for recovery from a config dict.
    """

    def __init__(self, table_dir: Path, *, producer: Callable[[], Any],
                 consumer_settings: dict[str, Any],
                 consumer_factory: Callable[[dict[str, Any]], Any] | None = None,
                 default_store: str = "rocksdb://") -> None:
        self.table_dir = table_dir
        self._producer = producer
        self._consumer_settings = consumer_settings
        self._consumer_factory = consumer_factory
        self._default_store = default_store
        self._shards: dict[tuple[str, int], Shard] = {}
        self._writing: dict[int, tuple[Event[Any], int]] = {}  # id(shard) → (event, n)
        self.recoveries: dict[tuple[str, int], Recovery] = {}
        self.redelivered_writes = 0

    # -- TableRuntime -----------------------------------------------------------

    def shard(self, table: Table, partition: int) -> Shard:
        shard = self._shards.get((table.name, partition))
        if shard is None:
            shard = self.open(table, partition)
        return shard

    def local_shards(self, table: Table) -> list[Shard]:
        return [shard for (name, _), shard in self._shards.items() if name == table.name]

    def write(self, table: Table, shard: Shard, event: Event[Any], key: bytes,
              value: bytes | None) -> None:
        record = event.message
        mark = (record.offset, self._index_of(shard, event))
        applied = shard.mark(record.topic)
        if applied is not None and mark <= applied:
            # A redelivery: this write is in the shard already. Produce the row as it
            # is, in case the changelog never got the first write.
            self.redelivered_writes += 1
            value = shard.get(key)
        else:
            shard.write(key, value, record.topic, mark)
        self._produce(table, shard, key, value, event, encode_mark(record.topic, mark))

    # -- ownership -------------------------------------------------------------

    def open(self, table: Table, partition: int) -> Shard:
        """Open the shard of ``partition`` and catch it up with its changelog."""
        store = table.store or self._default_store
        shard: Shard
        if store.startswith("memory"):
            shard = MemoryShard(partition)
        else:
            shard = RocksShard(self.table_dir / table.name / str(partition), partition)
        self.recoveries[(table.name, partition)] = self.recover(table, shard)
        self._shards[(table.name, partition)] = shard
        return shard

    def release(self, partition: int) -> None:
        """Close every shard of ``partition`` (it moved to another owner)."""
        for key in [k for k in self._shards if k[1] == partition]:
            shard = self._shards.pop(key)
            self._writing.pop(id(shard), None)
            shard.close()

    def close(self) -> None:
        """Close every shard (the instance is stopping)."""
        for partition in {p for _, p in self._shards}:
            self.release(partition)

    # -- recovery ----------------------------------------------------------------

    def recover(self, table: Table, shard: Shard) -> Recovery:
        """Apply the changelog of ``shard``'s partition from its recorded offset on."""
        from confluent_kafka import TopicPartition

        stats = Recovery()
        started = time.monotonic()
        topic = table.changelog_topic_name
        consumer = self._new_consumer()
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, shard.partition), timeout=30.0)
            start = max(shard.changelog_offset + 1, low)
            if start < high:
                log.info("table %s[%d]: replaying changelog offsets %d..%d", table.name,
                         shard.partition, start, high - 1)
                consumer.assign([TopicPartition(topic, shard.partition, start)])
                self._replay(consumer, shard, start, high, stats)
        finally:
            consumer.close()
        stats.seconds = time.monotonic() - started
        if stats.rows:
            log.info("table %s[%d]: recovered %d rows in %.2fs (%d already held)",
                     table.name, shard.partition, stats.rows, stats.seconds, stats.skipped)
        return stats

    def _replay(self, consumer: Any, shard: Shard, start: int, high: int,
                stats: Recovery) -> None:
        """Apply offsets ``start`` to ``high - 1``, a RocksDB write batch per fetch.

        ``consume(n)`` returns only when it has ``n`` messages or its timeout passed,
        so it is asked for no more than are left before ``high`` (a fixed batch made
        every partition wait out the timeout on its last batch: 1 s per shard). Where
        the offsets have gaps (compaction, transaction markers) fewer are there than
        asked for; the partition's end-of-file event, or the short timeout, ends that.

        A mark header is only parsed where the shard holds a mark of its source topic
        (a row may be skipped); otherwise only the last one per topic in the batch is,
        for the marks stored with the batch: in a rebuild of an empty shard that is one
        parse per batch instead of one per row.
        """
        own: dict[bytes, Mark | None] = {}
        position = start - 1
        while position < high - 1:
            messages = consumer.consume(min(RECOVERY_BATCH, high - 1 - position),
                                        RECOVERY_WAIT)
            rows: list[tuple[bytes, bytes | None]] = []
            latest: dict[bytes, bytes] = {}  # source topic → its last mark applied, raw
            at_end = False
            for message in messages:
                error = message.error()
                if error is not None:
                    at_end = at_end or error.code() == _PARTITION_EOF
                    continue
                position = message.offset()
                raw = _mark_header(message.headers())
                if raw is not None:
                    topic, _, rest = raw.partition(_SEP_BYTES)
                    if topic in own:
                        held = own[topic]
                    else:
                        held = own[topic] = shard.mark(topic.decode(errors="replace"))
                    if held is not None:
                        mark = _parse_mark(rest)
                        if mark is not None and mark <= held:
                            stats.skipped += 1  # the shard has this write (and maybe newer)
                            continue
                    latest[topic] = rest
                rows.append((message.key(), message.value()))
            stats.rows += len(rows)
            marks = {topic.decode(errors="replace"): mark for topic, rest in latest.items()
                     if (mark := _parse_mark(rest)) is not None}
            if rows or marks or position > shard.changelog_offset:
                shard.apply_changelog(rows, marks, position)
            if at_end:
                break

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

    def _index_of(self, shard: Shard, event: Event[Any]) -> int:
        """The number of this write among the writes ``event`` made to ``shard``."""
        last = self._writing.get(id(shard))
        index = last[1] + 1 if last is not None and last[0] is event else 0
        self._writing[id(shard)] = (event, index)
        return index

    def _produce(self, table: Table, shard: Shard, key: bytes, value: bytes | None,
                 event: Event[Any], mark: bytes) -> None:
        delivery = produce_soon(self._producer(), table.changelog_topic_name, key, value,
                                [(MARK_HEADER, mark)], partition=shard.partition)
        delivery.add_done_callback(lambda done: _note_offset(shard, done))
        ticket: Any = event._ticket
        if ticket is not None:
            ticket.ledger.hold([ticket], delivery)


def _mark_header(headers: list[tuple[str, bytes]] | None) -> bytes | None:
    """The raw ``agentd-mark`` header value among ``headers`` (None if absent)."""
    for name, value in headers or ():
        if name == MARK_HEADER and value is not None:
            return value
    return None


def _parse_mark(rest: bytes) -> Mark | None:
    """The mark of a header value's ``offset \x1f index`` part; None if it is not one."""
    offset, _, index = rest.partition(_SEP_BYTES)
    try:
        return int(offset), int(index)
    except ValueError:
        return None


def _note_offset(shard: Shard, delivery: Any) -> None:
    """The shard holds every changelog row up to a delivered one (it wrote them)."""
    if delivery.cancelled() or delivery.exception() is not None:
        return
    offset = getattr(delivery.result(), "offset", None)
    if isinstance(offset, int) and offset > shard.changelog_offset:
        shard.changelog_offset = offset
