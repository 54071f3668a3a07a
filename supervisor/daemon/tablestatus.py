"""Where ``agentd status`` and the metrics get their per-table rows.

A table's shards live in instance processes, so the daemon only knows what they tell
it: each instance whose agent uses tables sends a ``TABLES`` record with its ``PONG``
(once a second) and about once a second while it replays a changelog
(:mod:`supervisor.transport.wire`). The newest one is kept on the
:class:`~supervisor.daemon.instances.Instance` (cleared when its process dies), so a
status row is never older than about a second and never outlives its process.

Rows the daemon keeps itself (standby replicas, ``GlobalTable`` copies) come from
*keepers*: anything with a ``status_rows()`` method, appended to
:attr:`TableStatus.keepers`. Their rows join the instances' rows unchanged.

One row (a dict, the schema in docs/operations.md):
``{"table", "partition", "state", "agent", "instance", "keys", "keys_estimated",
"bytes", "changelog_offset", "changelog_lag", "recovered_rows"}``; ``state`` is
``active`` or ``recovering`` for an instance's shard (keepers add ``standby`` and
``global``, with ``instance`` null).
"""

from __future__ import annotations

from typing import Any, Protocol

from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import Instance
from supervisor.transport import wire

__all__ = ["RowSource", "TableStatus"]


class RowSource(Protocol):
    """A daemon-side holder of table copies (standby replicas, global tables)."""

    def status_rows(self) -> list[dict[str, Any]]:
        """Its rows, in the schema of the module docstring (cheap: called every second)."""
        ...


class TableStatus:
    """The instances' latest table reports, the keepers, and rows recovered so far."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        #: Daemon-side table holders whose rows status shows beside the instances'.
        self.keepers: list[RowSource] = []
        #: Changelog rows replayed into each (table, partition) since the daemon
        #: started, by every instance process (the metrics' recovered-rows counter).
        self.recovered: dict[tuple[str, int], int] = {}
        # What each instance process had reported as replayed, to count only the
        # increase: (agent, index, table, partition) → (pid, rows).
        self._counted: dict[tuple[str, int, str, int], tuple[int | None, int]] = {}

    def on_report(self, inst: Instance, record: bytes) -> None:
        """A ``TABLES`` record from ``inst``'s process."""
        rows = wire.decode_tables(record)
        inst.table_rows = rows
        inst.table_progress = sum(row.changelog_offset + 1 for row in rows
                                  if row.state == "recovering")
        for row in rows:
            key = (inst.agent.name, inst.index, row.table, row.partition)
            pid, before = self._counted.get(key, (None, 0))
            # A process counts from 0: a new pid's count is all new.
            added = row.recovered_rows - before if pid == inst.pid else row.recovered_rows
            self._counted[key] = (inst.pid, row.recovered_rows)
            if added > 0:
                table_partition = (row.table, row.partition)
                self.recovered[table_partition] = self.recovered.get(table_partition,
                                                                     0) + added

    def rows(self) -> list[dict[str, Any]]:
        """Every table row, by table and partition: the instances' copy of a partition
        first, then the keepers' copies of it."""
        rows = [_instance_row(inst, row) for inst in self.fleet.instances
                for row in inst.table_rows]
        rows.sort(key=_order)
        for keeper in self.keepers:
            rows.extend(keeper.status_rows())
        rows.sort(key=_order)  # stable: the instances' rows stay ahead of a partition's
        return rows

    def recovery_rows(self) -> list[dict[str, Any]]:
        """``[{"table", "partition", "recovered_rows"}]``, since the daemon started."""
        return [{"table": table, "partition": partition, "recovered_rows": rows}
                for (table, partition), rows in sorted(self.recovered.items())]


def _order(row: dict[str, Any]) -> tuple[str, int]:
    partition = row.get("partition")
    return str(row.get("table")), partition if isinstance(partition, int) else -1


def _instance_row(inst: Instance, row: wire.TableRow) -> dict[str, Any]:
    return {"table": row.table, "partition": row.partition, "state": row.state,
            "agent": inst.agent.name, "instance": inst.index, "keys": row.keys,
            "keys_estimated": row.keys_estimated, "bytes": row.disk_bytes,
            "changelog_offset": row.changelog_offset, "changelog_lag": row.changelog_lag,
            "recovered_rows": row.recovered_rows}
