#!/usr/bin/env python3
"""Tables: counting by key in agentd's table, a Faust Table and Quix Streams' State.

One real Kafka (``DevBroker``), one 8-partition topic of N JSON messages (~120 B)
keyed over 10,000 keys, produced once; each contestant reads it in its own consumer
group and adds one to the record key's count in its table, timed from its first
processed message to its N-th:

- ``agentd``: ``agentd start`` with ``_tables_app`` (2 instances, ``ordering =
  "partition"``, the default RocksDB store in a fresh ``table_dir``); the clock stops
  when the group's committed offsets reach the end, and a committed offset implies its
  changelog writes were acknowledged (docs/tables.md). Afterwards the shards are read
  back from disk: ``agentd_counts_exact`` says whether every key holds its count.
- ``faust``: a faust-streaming agent and ``app.Table`` (store ``--faust-store``;
  ``rocksdb://`` runs on rocksdict). Faust is slow at this, so it counts the first
  ``--faust-count`` messages of the same topic (default 100k, quick 20k) and its rate is
  from those.
- ``quix``: Quix Streams ``StreamingDataFrame.update(stateful=True)`` counting in its
  ``State`` (RocksDB with a changelog topic, the library's defaults), in its own venv.
  Faust and Quix stop the clock when their agent has processed the N-th message (their
  table writes are in flight then), as in ``throughput.py``.
- ``recovery``: a compacted ``<app id>-counts-changelog`` of R distinct rows (default
  1M, quick 200k) over 8 partitions, written as agentd's runtime writes it (JSON keys and
  values, the ``agentd-mark`` header), rebuilt into an empty ``table_dir`` by the
  instance's runtime in its own process (``_tables_recover.py``): rows per second.

**Warm-up.** A freshly started broker serves its first minute slower (its JVM has not
compiled the fetch, produce and compaction paths yet), and the contestant that runs
first pays for it: agentd's first runs on a fresh broker were 20-30 % slower than its
later ones while Quix, running after it, hardly moved. So before the timed runs the
bench runs agentd and Quix once each, unmeasured, on a topic of their own
(``--warm-up`` messages; default 100k, quick 50k; 0 turns it off), as ``ask.py``
warms its broker. Faust is not warmed: it reads a fraction of the topic at a rate the
broker's warmth does not change.

Only ratios from one run count: absolute rates drift between runs on shared machines.
Usage: ``bench/tables.py [--quick] [--count N] [--faust-count N] [--rows N]
[--warm-up N] [--only agentd,faust,quix,recovery]``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c

ORDER = ("agentd", "faust", "quix", "recovery")
KEYS = 10_000
PARTITIONS = 8
INSTANCES = 2
TABLE = "counts"  # _tables_app's table
#: Floors from issue 18: agentd / Quix state, agentd / Faust tables, recovery rows/s.
TARGETS = {"agentd_vs_quix_state": 1.5, "agentd_vs_faust_tables": 20.0,
           "recovery_rows_s": 200_000.0}


# ---------------------------------------------------------------------------- data

def expected_counts(count: int, keys: int = KEYS) -> dict[str, int]:
    """Each key's count after ``count`` messages of ``c.produce`` over ``keys`` keys."""
    return {c.key_of(j, keys).decode(): count // keys + (1 if j < count % keys else 0)
            for j in range(min(count, keys))}


def changelog_rows(rows: int, source: str, partitions: int = PARTITIONS) -> Iterator[c.Row]:
    """``rows`` distinct rows as agentd's runtime writes them to a changelog: key and
    value JSON, partition of the shard, the mark header of the source record (source
    offsets increasing within each partition, one write per record)."""
    from agentlib.tables.changelog import MARK_HEADER, encode_mark

    for i in range(rows):
        partition = i % partitions
        mark = encode_mark(source, (i // partitions, 0))
        yield (json.dumps(f"r{i:07d}").encode(), b"1", partition, [(MARK_HEADER, mark)])


def shard_counts(app_dir: Path, partitions: int = PARTITIONS) -> dict[str, int]:
    """The rows of ``app_dir``'s table ``counts``, read back from its RocksDB shards
    (the daemon has stopped and released them)."""
    from agentlib.tables.shards import RocksShard

    counts: dict[str, int] = {}
    for partition in range(partitions):
        path = app_dir / TABLE / str(partition)
        if not path.is_dir():
            continue
        shard = RocksShard(path, partition, lock_wait=10.0)
        try:
            for key, value in shard.items():
                counts[json.loads(key)] = json.loads(value)
        finally:
            shard.close()
    return counts


# ---------------------------------------------------------------------------- contestants

def run_agentd(bootstrap: str, topic: str, count: int, timeout: float) -> c.Outcome:
    """agentd counting with 2 instances; ``extra['counts_exact']`` from the shards."""
    table_dir = Path(tempfile.mkdtemp(prefix="bench-tables-"))
    group = c.unique("bench-tables")
    try:
        outcome = c.run_agentd("agentd", bootstrap, topic, count, INSTANCES, timeout,
                               group=group, settings={"app": "_tables_app:app",
                                                      "table_dir": str(table_dir)})
        held = shard_counts(table_dir / group)
    finally:
        shutil.rmtree(table_dir, ignore_errors=True)
    outcome.extra["counts_exact"] = held == expected_counts(count)
    outcome.extra["counted"] = sum(held.values())
    c.log(f"agentd: {len(held):,} keys, {sum(held.values()):,} counted, exact: "
          f"{outcome.extra['counts_exact']}")
    return outcome


def warm_up(bootstrap: str, names: list[str], count: int, timeout: float) -> None:
    """Unmeasured runs of agentd and Quix on a topic of ``count`` messages of their
    own (see the module docstring), so neither times a cold broker."""
    runs = [name for name in ("agentd", "quix") if name in names]
    if not count or not runs:
        return
    topic = c.create_topic(bootstrap, c.unique("bench-tables-warm"), PARTITIONS)
    c.produce(bootstrap, topic, count, keys=KEYS)
    for name in runs:
        if name == "agentd":
            outcome = run_agentd(bootstrap, topic, count, timeout)
        else:
            outcome = c.run_contestant("quix", bootstrap, topic, count, timeout,
                                       kind="quix_state")
        c.log(f"warm-up, unmeasured: {name} {outcome.msg_s:,.0f} msg/s"
              + (f" [{outcome.reason}]" if outcome.reason else ""))


def run_recovery(bootstrap: str, rows: int, timeout: float) -> c.Outcome:
    """Write a ``rows``-row changelog, time its rebuild into an empty table_dir."""
    app_id = c.unique("bench-recovery")
    topic = f"{app_id}-{TABLE}-changelog"
    c.create_topic(bootstrap, topic, PARTITIONS, config={"cleanup.policy": "compact"})
    seconds = c.produce_rows(bootstrap, topic, changelog_rows(rows, c.unique("bench-source")))
    c.log(f"produced {rows:,} changelog rows to {topic} in {seconds:.1f} s")
    table_dir = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    try:
        argv = [sys.executable, str(c.BENCH_DIR / "_tables_recover.py"), "--bootstrap",
                bootstrap, "--app-id", app_id, "--table-dir", str(table_dir), "--table", TABLE,
                "--partitions", str(PARTITIONS)]
        outcome = c.run_child("recovery", argv, timeout, env={"PYTHONPATH": c.pythonpath()},
                              expect=rows)
    finally:
        shutil.rmtree(table_dir, ignore_errors=True)
    c.log(f"recovery: seconds per partition {outcome.extra.get('partition_s')}")
    if not outcome.reason and outcome.extra.get("held") != rows:
        outcome.reason = f"the shards hold {outcome.extra.get('held')} rows of {rows}"
    if not outcome.reason:  # rows over the whole rebuild, not from the first row on
        outcome.msg_s = round(outcome.count / outcome.seconds)
    return outcome


def faust_store(wanted: str | None) -> str:
    """``--faust-store``, else ``rocksdb://`` where Faust can run it (rocksdict or
    python-rocksdb importable), else Faust's default ``memory://``."""
    if wanted:
        return wanted
    found = any(importlib.util.find_spec(m) for m in ("rocksdict", "rocksdb"))
    return "rocksdb://" if found else "memory://"


# ---------------------------------------------------------------------------- output

def summary(results: dict[str, c.Outcome], *, count: int, faust_count: int, rows: int,
            store: str) -> dict[str, Any]:
    """The JSON line: rates, ratios, agentd's exactness, the recovery, the targets."""
    rate = {name: o.msg_s for name, o in results.items()}
    agentd = rate.get("agentd", 0.0)
    recovery = results.get("recovery")
    out: dict[str, Any] = {
        "count": count, "keys": KEYS, "partitions": PARTITIONS, "agentd_instances": INSTANCES,
        "agentd_tables_msg_s": agentd, "faust_tables_msg_s": rate.get("faust", 0.0),
        "quix_state_msg_s": rate.get("quix", 0.0),
        "agentd_vs_faust_tables": c.ratio(agentd, rate.get("faust", 0.0)),
        "agentd_vs_quix_state": c.ratio(agentd, rate.get("quix", 0.0)),
        "agentd_counts_exact": bool(results["agentd"].extra.get("counts_exact"))
        if "agentd" in results else False,
        "agentd_store": "rocksdb", "faust_store": store, "faust_count": faust_count,
        "quix_store": "rocksdb",
        "recovery_rows": rows, "recovery_seconds": round(recovery.seconds, 3) if recovery else 0.0,
        "recovery_rows_s": rate.get("recovery", 0.0),
    }
    out["targets_met"] = {key: bool(out[key] >= floor) for key, floor in TARGETS.items()}
    reasons = {name: o.reason for name, o in results.items() if o.reason}
    if reasons:
        out["reasons"] = reasons
    return out


def rows_for_table(results: dict[str, c.Outcome], faust_count: int,
                   store: str) -> list[list[object]]:
    notes = {"agentd": f"{INSTANCES} instances, RocksDB; counts exact: "
                       f"{results['agentd'].extra.get('counts_exact')}"
             if "agentd" in results else "",
             "faust": f"Table store {store}; first {faust_count:,} messages only",
             "quix": "State, RocksDB", "recovery": "changelog rows into an empty table_dir"}
    return [[o.name, o.msg_s, o.count, round(o.seconds, 2), o.reason or notes.get(o.name, "ok")]
            for o in results.values()]


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--count", type=int, default=None, help="messages (default 1M, quick 200k)")
    cli.add_argument("--faust-count", type=int, default=None,
                     help="messages Faust counts (default 100k, quick 20k)")
    cli.add_argument("--rows", type=int, default=None,
                     help="changelog rows to recover (default 1M, quick 200k)")
    cli.add_argument("--faust-store", default=None, help="Faust Table store (default: "
                     "rocksdb:// where rocksdict is installed, else memory://)")
    cli.add_argument("--warm-up", type=int, default=None, help="messages of the "
                     "unmeasured broker warm-up (default 100k, quick 50k; 0: none)")
    cli.add_argument("--only", default=",".join(ORDER), help="comma-separated contestants")
    args = cli.parse_args()
    count = args.count or (200_000 if args.quick else 1_000_000)
    faust_count = min(count, args.faust_count or (20_000 if args.quick else 100_000))
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    timeout = args.timeout or (180.0 if args.quick else 600.0)
    warm = args.warm_up if args.warm_up is not None else (50_000 if args.quick else 100_000)
    store = faust_store(args.faust_store)
    names = [n for n in ORDER if n in args.only.split(",")]
    results: dict[str, c.Outcome] = {}
    with c.broker(args.bootstrap) as bootstrap:
        topic = c.create_topic(bootstrap, c.unique("bench-tables"), PARTITIONS)
        if set(names) - {"recovery"}:
            seconds = c.produce(bootstrap, topic, count, keys=KEYS)
            c.log(f"produced {count:,} messages over {KEYS:,} keys to {topic} in "
                  f"{seconds:.1f} s")
        warm_up(bootstrap, names, warm, timeout)
        for name in names:
            if name == "agentd":
                results[name] = run_agentd(bootstrap, topic, count, timeout)
            elif name == "faust":
                results[name] = c.run_contestant("faust", bootstrap, topic, faust_count, timeout,
                                                 kind="faust_table", options=["--store", store])
            elif name == "quix":
                results[name] = c.run_contestant("quix", bootstrap, topic, count, timeout,
                                                 kind="quix_state")
            else:
                results[name] = run_recovery(bootstrap, rows, timeout)
    print(f"\ntables: counting by key, N = {count:,} ({KEYS:,} keys, {PARTITIONS} partitions); "
          f"recovery of {rows:,} changelog rows\n")
    print(c.table(["contestant", "msg/s (rows/s)", "count", "seconds", "note"],
                  rows_for_table(results, faust_count, store)))
    out = summary(results, count=count, faust_count=faust_count, rows=rows, store=store)
    print(f"\nagentd / Faust tables: {out['agentd_vs_faust_tables']:.2f} (floor 20), "
          f"agentd / Quix state: {out['agentd_vs_quix_state']:.2f} (floor 1.5), recovery "
          f"{out['recovery_rows_s']:,.0f} rows/s (floor 200,000)\n")
    c.emit_json({"bench": "tables", **out})


if __name__ == "__main__":
    main()
