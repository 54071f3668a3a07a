"""A GlobalTable's one copy per host: written by the table keeper, read by instances.

Faust gives every worker process its own full copy of a GlobalTable. agentd runs one
process per core, so that would be one copy per core; instead the daemon's table
keeper (``supervisor/keeper``) tails every partition of the table's changelog into one
RocksDB database per host (:class:`HostCopyWriter`), and each instance opens it as a
RocksDB *secondary* (:class:`HostCopyReader`): read-only, sharing the files, catching
up with the writer at most every ``catch_up_every`` seconds.

An instance's own writes to a GlobalTable go to the changelog (the keeper applies them
like anyone else's); until the copy holds them, the instance reads them from its
*overlay*, so an agent reads what it wrote (Faust's worker does too). An overlay entry
goes once the copy's applied offset for that changelog partition reaches the write's.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["HOST_COPY_DIR", "HostCopyReader", "HostCopyWriter", "host_copy_path"]

#: The directory name of the host copy beside a table's partition shards.
HOST_COPY_DIR = "global"
_OFFSET = struct.Struct(">q")
_CF = "agentd"
#: Overlay entries beyond which a catch-up also drops those the copy holds.
OVERLAY_PRUNE_AT = 10_000


def host_copy_path(table_root: Path) -> Path:
    """Where the host copy of the table whose shards live in ``table_root`` is."""
    return table_root / HOST_COPY_DIR


def _offset_key(partition: int) -> bytes:
    return b"changelog-offset:%d" % partition


def _options(*, create: bool) -> Any:
    from rocksdict import Options

    options = Options(raw_mode=True)
    if create:
        options.create_if_missing(True)
        options.create_missing_column_families(True)
    return options


class HostCopyWriter:
    """The keeper's side: the only process that writes the host copy."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db: Any = Rdict(str(path), options=_options(create=True),
                              column_families={_CF: _options(create=False)})
        self._cf: Any = self._db.get_column_family(_CF)
        self._cf_handle: Any = self._db.get_column_family_handle(_CF)

    def applied(self, partition: int) -> int:
        """The highest changelog offset of ``partition`` the copy holds (-1: none)."""
        stored = self._cf.get(_offset_key(partition))
        return _OFFSET.unpack(stored)[0] if stored else -1

    def apply(self, partition: int, rows: list[tuple[bytes, bytes | None]],
              offset: int) -> None:
        """Changelog rows of ``partition`` up to ``offset``, in one atomic write."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in rows:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(_offset_key(partition), _OFFSET.pack(offset), self._cf_handle)
        self._db.write(batch)

    def keys_estimate(self) -> int:
        return int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)

    def close(self) -> None:
        if self._db is not None:
            del self._cf_handle
            self._cf = None
            self._db.close()
            self._db = None


class HostCopyReader:
    """An instance's side: a read-only view of the host copy, plus its own overlay.

    It acts as the table's only shard in the instance (``partition`` -1): the table's
    mapping operations read it as they read a partition's shard.
    """

    partition = -1
    changelog_offset = -1

    def __init__(self, path: Path, secondary: Path, *, catch_up_every: float = 0.1,
                 wait: float = 60.0) -> None:
        from rocksdict import AccessType, Rdict

        deadline = time.monotonic() + wait
        while not (path / "CURRENT").exists():  # the keeper creates it before ready
            if time.monotonic() >= deadline:
                raise FileNotFoundError(f"{path}: no host copy of this GlobalTable (is "
                                        f"the daemon's table keeper running?)")
            time.sleep(0.05)
        secondary.mkdir(parents=True, exist_ok=True)
        self._db: Any = Rdict(str(path), options=_options(create=False),
                              column_families={_CF: _options(create=False)},
                              access_type=AccessType.secondary(str(secondary)))
        self._cf: Any = self._db.get_column_family(_CF)
        self._every = catch_up_every
        self._next_catch_up = 0.0
        #: key → (value, changelog partition, offset once delivered else None)
        self._overlay: dict[bytes, list[Any]] = {}

    # -- the instance's own writes ------------------------------------------------

    def wrote(self, key: bytes, value: bytes | None) -> list[Any]:
        """Note a write this instance produced; the caller sets ``entry[1:3]`` to its
        changelog partition and offset once the broker acknowledged it."""
        entry = self._overlay[key] = [value, None, None]
        return entry

    # -- Shard-like reads -----------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        self._catch_up()
        entry = self._overlay.get(key)
        if entry is not None:
            if entry[2] is None or self._applied(entry[1]) < entry[2]:
                value: bytes | None = entry[0]
                return value
            del self._overlay[key]  # the copy has it now (or something newer)
        stored: bytes | None = self._db.get(key)
        return stored

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        self._catch_up()
        seen = set(self._overlay)
        for key, entry in list(self._overlay.items()):
            if entry[0] is not None:
                yield key, entry[0]
        for key, value in self._db.items():
            if key not in seen:
                yield key, value

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def mark(self, source: str) -> None:
        return None

    def close(self) -> None:
        if self._db is not None:
            self._cf = None
            self._db.close()
            self._db = None

    # -- freshness ------------------------------------------------------------------

    def _catch_up(self) -> None:
        now = time.monotonic()
        if now >= self._next_catch_up:
            self._db.try_catch_up_with_primary()
            self._next_catch_up = now + self._every
            if len(self._overlay) > OVERLAY_PRUNE_AT:
                self._prune()

    def _prune(self) -> None:
        """Drop the overlay entries the copy holds now (keys written once, never read)."""
        applied: dict[int, int] = {}
        for key, entry in list(self._overlay.items()):
            if entry[2] is None:
                continue
            if entry[1] not in applied:
                applied[entry[1]] = self._applied(entry[1])
            if applied[entry[1]] >= entry[2]:
                del self._overlay[key]

    def _applied(self, partition: int) -> int:
        stored = self._cf.get(_offset_key(partition))
        return _OFFSET.unpack(stored)[0] if stored else -1
