"""Child side of ``bench/tables.py``'s recovery: rebuild a table into an empty table_dir.

``python bench/_tables_recover.py --bootstrap B --app-id A --table-dir D [--table counts]
[--partitions 8]`` opens every partition's shard of table ``<A>-<table>`` with the
instance's own runtime (:class:`agentlib.tables.changelog.ChangelogRuntime`, RocksDB
under ``D``), which is what an agentd instance does before it hands its agent the first
record of a partition: each shard replays its changelog partition to its end. The
clock runs from before the first shard is opened until the last is caught up, one
partition after another as one instance would; the rows come from the runtime's own
recovery counts. Then (outside the clock) it counts the rows the shards hold, and
reports with ``_common.report``: ``count`` is the rows replayed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import report


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("--bootstrap", required=True)
    cli.add_argument("--app-id", required=True)
    cli.add_argument("--table-dir", type=Path, required=True)
    cli.add_argument("--table", default="counts")
    cli.add_argument("--partitions", type=int, default=8)
    args = cli.parse_args()
    import agentlib
    from agentlib.tables.changelog import ChangelogRuntime

    # The app's table as agentd's instance has it (the default store, RocksDB).
    table = agentlib.App(args.app_id).Table(args.table, default=int)
    runtime = ChangelogRuntime(args.table_dir / args.app_id, producer=lambda: None,
                               consumer_settings={"bootstrap.servers": args.bootstrap})
    first = time.time()
    for partition in range(args.partitions):
        runtime.open(table, partition)
    last = time.time()
    recoveries = list(runtime.recoveries.values())
    held = sum(len(shard) for shard in runtime.local_shards(table))
    runtime.close()
    report(first, last, sum(r.rows for r in recoveries), held=held,
           skipped=sum(r.skipped for r in recoveries),
           partition_s=[round(r.seconds, 3) for r in recoveries])
    os._exit(0)


if __name__ == "__main__":
    main()
