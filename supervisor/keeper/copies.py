"""The keeper's loop: tail changelogs into standby shards and GlobalTable host copies.

Two kinds of copy, one consumer (assigned partitions, no group):

- **Standby shards** (``table_standby_replicas``, Faust's setting): for every table
  partition another daemon of the group processes, a shard at the very path an
  instance of this daemon would use. When the partition fails over to this daemon, the
  instance opens that shard and replays only the changelog's tail. The daemon sends
  the wanted set after each rebalance; a shard leaves at once (an instance here is
  about to open it) and joins only after the set has been still for
  ``STANDBY_SETTLE`` seconds, so a rebalance's revoke-then-assign does not churn it.
  A standby shard applies the changelog the way recovery does (marks included), so
  the next owner skips redelivered records as the old owner would have.
- **GlobalTable host copies**: every partition of a GlobalTable's changelog into one
  database per host (:mod:`agentlib.tables.hostcopy`) that instances read. At start
  the keeper catches them up to the changelogs' ends and only then says ``ready``:
  the daemon starts consuming after that, as Faust recovers GlobalTables first.

Status (per copy: keys, bytes on disk, changelog offset and lag) goes to a JSON file
the daemon reads when asked (``agentd status``): nothing crosses a pipe per message.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, TopicPartition

from agentlib.tables.hostcopy import HostCopyWriter, host_copy_path
from agentlib.tables.replay import Recovery, ReplayState, apply_messages
from agentlib.tables.shards import RocksShard, ShardLocked

__all__ = ["STANDBY_SETTLE", "Keeper"]

log = logging.getLogger("agentd.keeper")

STANDBY_SETTLE = 2.0   # seconds a standby set must hold before shards open
RETRY_LOCKED = 1.0     # a shard still held by an instance is tried again after this
STATUS_EVERY = 1.0
BATCH = 2000


class Standby:
    """One standby shard and what applying its changelog needs."""

    def __init__(self, table: str, shard: RocksShard) -> None:
        self.table = table
        self.shard = shard
        self.held = ReplayState()  # kept between batches: a flush may span two
        self.stats = Recovery()


class Keeper:
    """Copies of the changelog partitions this daemon does not own, kept current."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.tables: dict[str, dict[str, Any]] = {t["changelog"]: t for t in spec["tables"]}
        self.status_file = Path(spec["status_file"])
        self.consumer = Consumer({
            "bootstrap.servers": spec["bootstrap"], "group.id": "agentd-table-keeper",
            "enable.auto.commit": False, "enable.partition.eof": False,
            "auto.offset.reset": "earliest", **spec.get("client", {})})
        self.globals: dict[str, HostCopyWriter] = {}
        self.standby: dict[tuple[str, int], Standby] = {}
        self.wanted: set[tuple[str, int]] = set()
        self.wanted_at = 0.0
        self.next_retry = 0.0
        self.next_status = 0.0
        self.commands: queue.Queue[dict[str, Any] | None] = queue.Queue()

    # ------------------------------------------------------------------ run

    def run(self, commands: IO[str], ready: IO[str]) -> None:
        """Catch the GlobalTables up, say ready, then copy until ``commands`` closes."""
        threading.Thread(target=self._read_commands, args=(commands,), daemon=True,
                         name="keeper-commands").start()
        self.open_globals()
        self.catch_up_globals()
        ready.write("ready\n")
        ready.flush()
        while self.handle_commands():
            self.reconcile_standby()
            self.apply(self.consumer.consume(BATCH, 0.2))
            self.write_status_if_due()

    def _read_commands(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                self.commands.put(json.loads(line))
        self.commands.put(None)  # EOF: the daemon is gone or stopping us

    def handle_commands(self) -> bool:
        """Take the newest standby set; False once the daemon closed the pipe."""
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return True
            if command is None:
                return False
            if "standby" in command:
                self.wanted = {(str(t), int(p)) for t, p in command["standby"]
                               if str(t) in self.tables}
                self.wanted_at = time.monotonic()

    # ------------------------------------------------------------------ GlobalTables

    def open_globals(self) -> None:
        assign = []
        for changelog, table in self.tables.items():
            if not table.get("global"):
                continue
            writer = self.globals[changelog] = HostCopyWriter(host_copy_path(Path(table["dir"])))
            assign += [TopicPartition(changelog, p, writer.applied(p) + 1)
                       for p in range(int(table["partitions"]))]
        if assign:
            self.consumer.incremental_assign(assign)

    def catch_up_globals(self) -> None:
        """Apply every GlobalTable changelog to its end as it is now, logging progress."""
        ends = {}
        for changelog, writer in self.globals.items():
            for p in range(int(self.tables[changelog]["partitions"])):
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(changelog, p), timeout=30.0)
                if writer.applied(p) + 1 < high:
                    ends[(changelog, p)] = high - 1
        if not ends:
            return
        total, started, rows = len(ends), time.monotonic(), 0
        next_log = started + 2.0
        while ends:
            messages = self.consumer.consume(BATCH, 1.0)
            rows += self.apply(messages)
            for message in messages:
                if message.error() is not None:
                    continue
                key = (str(message.topic()), int(message.partition() or 0))
                if key in ends and ends[key] <= int(message.offset() or 0):
                    del ends[key]
            if time.monotonic() >= next_log:
                log.info("GlobalTables: %d of %d changelog partitions caught up, %d rows "
                         "(%.0f rows/s)", total - len(ends), total, rows,
                         rows / (time.monotonic() - started))
                next_log += 2.0
        log.info("GlobalTables: recovered %d rows in %.2fs", rows, time.monotonic() - started)

    # ------------------------------------------------------------------ standby

    def reconcile_standby(self) -> None:
        """Close shards no longer wanted now; open wanted ones once the set settled."""
        for key in [k for k in self.standby if k not in self.wanted]:
            self.close_standby(key)
        now = time.monotonic()
        missing = self.wanted.difference(self.standby)
        if not missing or now - self.wanted_at < STANDBY_SETTLE or now < self.next_retry:
            return
        for key in sorted(missing):
            self.open_standby(key)
        self.next_retry = now + RETRY_LOCKED

    def open_standby(self, key: tuple[str, int]) -> None:
        changelog, partition = key
        table = self.tables[changelog]
        try:
            shard = RocksShard(Path(table["dir"]) / str(partition), partition, lock_wait=0.0)
        except ShardLocked:
            return  # an instance of this daemon still has it: next retry
        self.standby[key] = Standby(str(table["name"]), shard)
        self.consumer.incremental_assign(
            [TopicPartition(changelog, partition, shard.changelog_offset + 1)])
        log.info("standby %s[%d]: from changelog offset %d", table["name"], partition,
                 shard.changelog_offset + 1)

    def close_standby(self, key: tuple[str, int]) -> None:
        standby = self.standby.pop(key)
        self.consumer.incremental_unassign([TopicPartition(key[0], key[1])])
        standby.shard.close()
        log.info("standby %s[%d]: closed at changelog offset %d (%d rows applied)",
                 standby.table, key[1], standby.shard.changelog_offset, standby.stats.rows)

    # ------------------------------------------------------------------ applying

    def apply(self, messages: Iterable[Any]) -> int:
        """Apply a batch, grouped by partition; the number of rows applied."""
        groups: dict[tuple[str, int], list[Any]] = {}
        for message in messages:
            if message.error() is None:
                groups.setdefault((message.topic(), message.partition()), []).append(message)
        rows = 0
        for (changelog, partition), batch in groups.items():
            writer = self.globals.get(changelog)
            if writer is not None:
                writer.apply(partition, [(m.key(), m.value()) for m in batch],
                             batch[-1].offset())
                rows += len(batch)
                continue
            standby = self.standby.get((changelog, partition))
            if standby is not None:  # else: closed since the fetch; the owner replays it
                before = standby.stats.rows
                apply_messages(standby.shard, batch, standby.held, standby.stats)
                rows += standby.stats.rows - before
        return rows

    # ------------------------------------------------------------------ status

    def write_status_if_due(self) -> None:
        now = time.monotonic()
        if now < self.next_status:
            return
        self.next_status = now + STATUS_EVERY
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "rows": self.status_rows()}))
        tmp.replace(self.status_file)

    def status_rows(self) -> list[dict[str, Any]]:
        rows = []
        for (changelog, partition), standby in sorted(self.standby.items()):
            rows.append(self._row(standby.table, partition, "standby", standby.shard.path,
                                  standby.shard.key_count(), changelog,
                                  standby.shard.changelog_offset, standby.stats.rows))
        for changelog, writer in sorted(self.globals.items()):
            for partition in range(int(self.tables[changelog]["partitions"])):
                rows.append(self._row(str(self.tables[changelog]["name"]), partition,
                                      "global", writer.path, writer.keys_estimate(),
                                      changelog, writer.applied(partition), 0))
        return rows

    def _row(self, table: str, partition: int, state: str, path: Path, keys: int,
             changelog: str, offset: int, applied_rows: int) -> dict[str, Any]:
        _, high = self.consumer.get_watermark_offsets(TopicPartition(changelog, partition),
                                                      cached=True) or (0, 0)
        return {"table": table, "partition": partition, "state": state, "agent": None,
                "instance": None, "keys": keys, "keys_estimated": True,
                "bytes": _disk_bytes(path), "changelog_offset": offset,
                "changelog_lag": max(0, high - 1 - offset) if high >= 0 else None,
                "recovered_rows": applied_rows}

    def close(self) -> None:
        for key in list(self.standby):
            self.close_standby(key)
        for writer in self.globals.values():
            writer.close()
        self.consumer.close()
        self.status_file.unlink(missing_ok=True)


def _disk_bytes(path: Path) -> int:
    try:
        return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())
    except OSError:
        return 0
