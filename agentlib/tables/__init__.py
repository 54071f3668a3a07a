"""Faust's tables under agentd: partitioned, changelog-backed, RocksDB per partition.

``app.Table`` / ``app.GlobalTable`` make them; :mod:`~agentlib.tables.table` is the
mapping and Faust's rules, :mod:`~agentlib.tables.windows` the windowed views,
:mod:`~agentlib.tables.shards` where a partition's rows live,
:mod:`~agentlib.tables.runtime` what a table asks of its process, and
:mod:`~agentlib.tables.changelog` the runtime an agentd instance installs (docs/tables.md).
"""

from agentlib.tables.table import GlobalTable, KeyNotCopartitioned, Table, changelog_name
from agentlib.tables.windows import HoppingWindow, TumblingWindow, WindowWrapper

__all__ = ["GlobalTable", "HoppingWindow", "KeyNotCopartitioned", "Table", "TumblingWindow",
           "WindowWrapper", "changelog_name"]
