"""Where one partition of one table keeps its rows: in memory, or in RocksDB on disk.

A table is split the way its source topic is: one *shard* per partition, owned by the
instance that owns the partition (docs/tables.md). A shard holds encoded keys and
values (bytes, as they travel in the changelog) and, beside them, its *marks*: the
changelog offset it has applied and, per source topic, the last source record whose
writes it holds. A row and the mark that made it are written together (one RocksDB
write batch), so after any crash the shard knows exactly which source records it has
already counted.

A RocksDB shard buffers its writes (:class:`RocksShard`): rows and marks wait in
memory, are read from there, and reach RocksDB as one write batch at :meth:`flush`,
which the runtime calls once per flush window (:mod:`agentlib.tables.writeback`)
before it produces the window's changelog rows; a record is acked only once those
are delivered. What a crash loses of the buffer belongs to records not yet acked.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

__all__ = ["PENDING_MAX", "READ_CACHE_MAX", "Mark", "MemoryShard", "RocksShard", "Shard",
           "ShardLocked"]

#: (source offset, index of the write within that record's processing)
Mark = tuple[int, int]
_MARK = struct.Struct(">qq")
_OFFSET = struct.Struct(">q")
_CHANGELOG_KEY = b"changelog-offset"
#: Rows a RocksDB shard keeps pending before it writes them without waiting for a flush
#: (bounds the buffer of an agent that writes a lot without yielding to its loop).
PENDING_MAX = 10_000
#: Rows a RocksDB shard keeps in its read cache before it drops the cache whole.
READ_CACHE_MAX = 10_000
_ABSENT: Any = object()


class ShardLocked(Exception):
    """Another process still has this shard open (its partition's previous owner)."""


class Shard(Protocol):
    """One table partition's rows and marks."""

    partition: int
    #: The highest changelog offset whose row this shard holds (-1: none).
    changelog_offset: int
    #: Whether :meth:`key_count` is an estimate (RocksDB's) rather than exact.
    keys_estimated: bool

    def key_count(self) -> int:
        """The number of rows, cheaply (for status, once a second: never a full scan)."""
        ...

    def disk_bytes(self) -> int:
        """Bytes the shard takes on disk (0 in memory)."""
        ...

    def get(self, key: bytes) -> bytes | None: ...

    def write(self, key: bytes, value: bytes | None, source: str | None, mark: Mark | None,
              ) -> None:
        """Set (``value``) or delete (None) ``key``; with ``source``, record ``mark``
        as the last write of that source topic, in the same atomic step."""
        ...

    def mark(self, source: str) -> Mark | None: ...

    @property
    def pending(self) -> int:
        """Writes made and not yet stored (0 where writes are stored at once)."""
        ...

    def flush(self) -> None:
        """Store the pending writes with their marks, atomically."""
        ...

    def items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def __len__(self) -> int: ...

    def apply_changelog(self, rows: list[tuple[bytes, bytes | None]],
                        marks: dict[str, Mark], changelog_offset: int) -> None:
        """Recovery: apply changelog rows in order, with the marks they carried."""
        ...

    def close(self) -> None: ...


class MemoryShard:
    """A shard in a dict: ``store="memory://"``, ``test_context()``, client scripts."""

    keys_estimated = False

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.changelog_offset = -1
        self._rows: dict[bytes, bytes] = {}
        self._marks: dict[str, Mark] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._rows.get(key)

    def write(self, key: bytes, value: bytes | None, source: str | None,
              mark: Mark | None) -> None:
        if value is None:
            self._rows.pop(key, None)
        else:
            self._rows[key] = value
        if source is not None and mark is not None:
            self._marks[source] = mark

    def mark(self, source: str) -> Mark | None:
        return self._marks.get(source)

    pending = 0  # writes are applied at once

    def flush(self) -> None:
        """Nothing is pending in memory."""

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._rows.items()))

    def __len__(self) -> int:
        return len(self._rows)

    def apply_changelog(self, rows: list[tuple[bytes, bytes | None]],
                        marks: dict[str, Mark], changelog_offset: int) -> None:
        for key, value in rows:
            self.write(key, value, None, None)
        self._marks.update(marks)
        self.changelog_offset = max(self.changelog_offset, changelog_offset)

    def key_count(self) -> int:
        return len(self._rows)

    def disk_bytes(self) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release: the rows go with the process."""


class RocksShard:
    """A shard in its own RocksDB database (rocksdict), marks in a column family.

    RocksDB lets one process open a database at a time; the previous owner of the
    partition may still hold it for a moment after the partition moved, so opening
    waits up to ``lock_wait`` seconds for it (:class:`ShardLocked` after that).

    Its key count is RocksDB's ``estimate-num-keys``: counting exactly would cost a
    scan (status asks every second) or a read before every write (the hot path). The
    estimate is close once RocksDB has flushed; rows overwritten since the last flush
    (a counter's increments) are counted once per write until then.

    **Writes are buffered.** :meth:`write` puts the row in ``_pending`` (reads look there
    first) and the mark in ``_marks``; :meth:`flush` writes every pending row, the marks
    changed since the last flush and the changelog offset as one RocksDB write batch:
    one batch per flush window instead of one per write. Rows and marks still change
    together: the batch holds the last value of each pending row and the last mark of
    each source, which is what writing them one by one would have left.

    **Reads are cached.** Rows read from RocksDB and rows stored by a flush stay in a
    dict (``_clean``, None for an absent row) until it holds ``READ_CACHE_MAX`` rows,
    when it is dropped whole: a hot key costs a dict lookup instead of a call into
    RocksDB (about a tenth of an instance's CPU per record in bench/tables_inproc.py,
    whose 10,000 keys are ~1,250 per shard). Only this process writes the shard, so
    the cache cannot go stale; a changelog replay drops it.

    Crash safety, with the runtime flushing a window here before it produces the
    window's changelog rows, whose delivery its records wait for: a buffer lost in a
    crash holds writes of records not yet acked, so not committed; they are
    redelivered, and since their marks were lost with their rows the shard does not
    take them for redeliveries: it applies them again. None of those writes reached
    the changelog from this process (its rows are produced after the flush); where a
    previous owner's did, opening the shard replays the changelog from the offset
    stored with the last batch, rows *and* marks, so the shard holds them with their
    marks and the redelivered record's writes are skipped as already applied (their
    rows produced again).
    The stored changelog offset never passes a lost write: an offset is noted on a
    delivery, and the write delivered was pending before it, so it is in the batch that
    stores the offset or in an earlier one. ``close`` flushes; ``items`` and ``len``
    flush first.
    """

    keys_estimated = True

    def __init__(self, path: Path, partition: int, *, lock_wait: float = 60.0) -> None:
        from rocksdict import Options, Rdict

        self.partition = partition
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.create_missing_column_families(True)
        deadline = time.monotonic() + lock_wait
        while True:
            try:
                self._db: Any = Rdict(str(path), options=options,
                                      column_families={"agentd": Options(raw_mode=True)})
                break
            except Exception as exc:  # rocksdict raises a bare Exception for a held LOCK
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise ShardLocked(f"{path} is still open in another process") from None
                time.sleep(0.05)
        self._marks_cf: Any = self._db.get_column_family("agentd")
        self._marks_handle: Any = self._db.get_column_family_handle("agentd")
        stored = self._marks_cf.get(_CHANGELOG_KEY)
        self.changelog_offset = _OFFSET.unpack(stored)[0] if stored else -1
        self._persisted_changelog = self.changelog_offset
        self._marks: dict[str, Mark] = {}
        #: Rows written and not yet stored, by key (None: deleted).
        self._pending: dict[bytes, bytes | None] = {}
        #: Sources whose mark changed since the last flush.
        self._marks_pending: set[str] = set()
        #: Rows as RocksDB holds them, lately read or stored (None: absent).
        self._clean: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._pending.get(key, _ABSENT)
        if value is not _ABSENT:
            return value
        clean = self._clean
        value = clean.get(key, _ABSENT)
        if value is not _ABSENT:
            return value
        value = self._db.get(key)
        if len(clean) >= READ_CACHE_MAX:
            clean.clear()
        clean[key] = value
        return value

    def write(self, key: bytes, value: bytes | None, source: str | None,
              mark: Mark | None) -> None:
        pending = self._pending
        pending[key] = value
        if source is not None and mark is not None:
            self._marks[source] = mark
            self._marks_pending.add(source)
        if len(pending) >= PENDING_MAX:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._marks_pending)

    def flush(self) -> None:
        if not self._pending and not self._marks_pending:
            return
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        self._stage(batch)
        if self.changelog_offset != self._persisted_changelog:
            batch.put(_CHANGELOG_KEY, _OFFSET.pack(self.changelog_offset), self._marks_handle)
        self._db.write(batch)
        self._persisted_changelog = self.changelog_offset
        clean = self._clean
        if len(clean) + len(self._pending) > READ_CACHE_MAX:
            clean.clear()
        clean.update(self._pending)
        self._pending = {}
        self._marks_pending = set()

    def _stage(self, batch: Any) -> None:
        """Put the pending rows and changed marks into ``batch``."""
        for key, value in self._pending.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        marks = self._marks
        for source in self._marks_pending:
            batch.put(b"mark:" + source.encode(), _MARK.pack(*marks[source]),
                      self._marks_handle)

    def mark(self, source: str) -> Mark | None:
        mark = self._marks.get(source)
        if mark is None:
            stored = self._marks_cf.get(b"mark:" + source.encode())
            if stored is None:
                return None
            mark = self._marks[source] = _MARK.unpack(stored)
        return mark

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        self.flush()
        return iter(self._db.items())

    def __len__(self) -> int:
        self.flush()
        return sum(1 for _ in self._db.keys())  # noqa: SIM118 (an Rdict iterates items)

    def key_count(self) -> int:
        if self._db is None:
            return 0
        estimate = self._db.property_int_value("rocksdb.estimate-num-keys")
        return int(estimate or 0)

    def disk_bytes(self) -> int:
        """The sizes of the files in the shard's directory (SST files, WAL, manifest)."""
        total = 0
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:  # a WAL or SST RocksDB just deleted
                        continue
        except FileNotFoundError:
            return 0
        return total

    def apply_changelog(self, rows: list[tuple[bytes, bytes | None]],
                        marks: dict[str, Mark], changelog_offset: int) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        self._stage(batch)  # (nothing is pending while a shard catches up)
        for key, value in rows:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        for source, mark in marks.items():
            batch.put(b"mark:" + source.encode(), _MARK.pack(*mark), self._marks_handle)
            self._marks[source] = mark
        self.changelog_offset = max(self.changelog_offset, changelog_offset)
        batch.put(_CHANGELOG_KEY, _OFFSET.pack(self.changelog_offset), self._marks_handle)
        self._persisted_changelog = self.changelog_offset
        self._db.write(batch)
        self._pending = {}
        self._marks_pending = set()
        self._clean.clear()

    def close(self) -> None:
        """Persist the changelog offset and release the database (and its LOCK)."""
        if self._db is None:
            return
        self.flush()
        if self.changelog_offset != self._persisted_changelog:
            self._marks_cf.put(_CHANGELOG_KEY, _OFFSET.pack(self.changelog_offset))
        del self._marks_handle
        self._marks_cf = None
        self._db.close()
        self._db = None
