"""What a table asks of the process it runs in: its shards, and what a write costs.

A :class:`~agentlib.tables.table.Table` knows keys, values and Faust's rules; *where*
its rows live and what else a write must do is the runtime's. Two runtimes exist:

* :class:`LocalRuntime` (the default): every shard in memory, nothing produced. It is
  what ``agent.test_context()`` and client scripts get, so a test of an agent that
  counts in a table needs no broker, as in Faust.
* :class:`agentlib.tables.changelog.ChangelogRuntime`: what an agentd instance
  installs. Shards in RocksDB (or memory) under ``table_dir``, each write produced to
  the table's changelog and holding its event until the broker acknowledged it,
  recovery from the changelog, and the marks that keep a redelivered record from
  being counted twice.

The runtime is per process (one agentd instance runs one agent), installed once with
:func:`install` before the agent starts.
"""

from __future__ import annotations

from typing import Any, Protocol

from agentlib.events import Event
from agentlib.tables.shards import MemoryShard, Shard

__all__ = ["LocalRuntime", "Table", "TableRuntime", "current", "install"]


class Table(Protocol):
    """What a runtime reads of a table (an ``agentlib.tables.Table``)."""

    @property
    def name(self) -> str: ...

    @property
    def store(self) -> str | None: ...

    @property
    def is_global(self) -> bool: ...

    @property
    def changelog_topic_name(self) -> str: ...


class TableRuntime(Protocol):
    """Shards by (table, partition) and the write path."""

    def shard(self, table: Table, partition: int) -> Shard:
        """The shard of ``partition``, open and caught up with its changelog."""
        ...

    def local_shards(self, table: Table) -> list[Shard]:
        """The shards of ``table`` this process has open (what ``items()`` walks)."""
        ...

    def write(self, table: Table, shard: Shard, event: Event[Any], key: bytes,
              value: bytes | None) -> None:
        """Apply one write made while processing ``event`` (``value`` None: delete)."""
        ...


class LocalRuntime:
    """Every shard in memory; writes apply at once and go nowhere else."""

    def __init__(self) -> None:
        self._shards: dict[tuple[str, int], MemoryShard] = {}

    def shard(self, table: Table, partition: int) -> Shard:
        shard = self._shards.get((table.name, partition))
        if shard is None:
            shard = self._shards[(table.name, partition)] = MemoryShard(partition)
        return shard

    def local_shards(self, table: Table) -> list[Shard]:
        return [shard for (name, _), shard in sorted(self._shards.items())
                if name == table.name]

    def write(self, table: Table, shard: Shard, event: Event[Any], key: bytes,
              value: bytes | None) -> None:
        shard.write(key, value, None, None)


_runtime: TableRuntime = LocalRuntime()


def install(runtime: TableRuntime) -> None:
    """Make ``runtime`` the one every table of this process uses from now on."""
    global _runtime
    _runtime = runtime


def current() -> TableRuntime:
    """The runtime tables of this process use."""
    return _runtime
