"""What the table tests share: a counting app, the changelog read back, replay figures.

Why a module: the table tests in ``tests/`` and the table scenarios of the fault suite
(``tests/faults/test_faults_tables.py``) count the same way and judge the same way. A
count is judged against the input, key by key: a key counted short is *lost* counts, a
key counted over is *duplicate* counts (a redelivered record applied twice). What a
restart replayed is read from the instances' own log lines
(``agentlib/tables/changelog.py``), so the figure is what the shards did, not a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kafkatools

from agentlib.tables.shards import RocksShard

#: Counts ``event.key`` of ``$IN_TOPIC`` in the table ``word_counts`` (``$APP_ID``).
COUNTING_APP = '''
import os
import time
import agentlib as faust

app = faust.App(os.environ.get("APP_ID", "tables-count"))
source = app.topic(os.environ["IN_TOPIC"], key_type=str, value_type=bytes,
                   value_serializer="raw")
counts = app.Table("word_counts", default=int)
DELAY = float(os.environ.get("DELAY", "0"))


@app.agent(source)
async def count(stream):
    async for event in stream.events():
        counts[event.key] += 1
        if DELAY:
            time.sleep(DELAY)
'''


def counting_forwarder(version: str = "v1") -> str:
    """The fault suite's agent with a table: counts each record's key in
    ``word_counts`` and forwards its value to ``$SINK_TOPIC``, so a scenario gets both
    the fault table's message figures (from the sink) and the count figures (from the
    table). ``version`` makes a reload's module differ from the last one."""
    return f'''
import asyncio
import os
import agentlib as faust

VERSION = {version!r}
app = faust.App(os.environ["APP_ID"])
source = app.topic(os.environ["IN_TOPIC"], key_type=str, value_type=bytes,
                   value_serializer="raw")
sink = app.topic(os.environ["SINK_TOPIC"], key_type=bytes, value_type=bytes,
                 value_serializer="raw")
counts = app.Table("word_counts", default=int)
DELAY = float(os.environ.get("FORWARD_DELAY", "0"))


@app.agent(source, sink=[sink])
async def count(stream):
    async for event in stream.events():
        counts[event.key] += 1
        if DELAY:
            await asyncio.sleep(DELAY)
        yield event.value
'''


def changelog_counts(bootstrap: str, app_id: str, table: str = "word_counts"
                     ) -> dict[str, int]:
    """The latest row per key in the table's changelog (what a rebuild would hold)."""
    rows: dict[str, int] = {}
    for record in kafkatools.read_to_end(bootstrap, f"{app_id}-{table}-changelog"):
        key = json.loads(record.key)
        if record.value is None:
            rows.pop(key, None)
        else:
            rows[key] = json.loads(record.value)
    return rows


def shard_rows(table_dir: Path, app_id: str, table: str = "word_counts") -> dict[str, Any]:
    """Every row of the table's RocksDB shards on disk, keyed by the key's JSON text as
    stored (the daemon must be stopped: a shard opens in one process at a time)."""
    rows: dict[str, Any] = {}
    for path in sorted((table_dir / app_id / table).iterdir()):
        shard = RocksShard(path, int(path.name), lock_wait=5.0)
        try:
            for key, value in shard.items():
                rows[key.decode()] = json.loads(value)
        finally:
            shard.close()
    return rows


def shard_counts(table_dir: Path, app_id: str, table: str = "word_counts"
                 ) -> dict[str, int]:
    """:func:`shard_rows` of a table keyed by text (``counts[word]``)."""
    return {json.loads(key): value for key, value in shard_rows(table_dir, app_id, table).items()}


def changelog_rows(bootstrap: str, app_id: str, table: str = "word_counts") -> int:
    """How many rows the changelog holds in all (what a full rebuild reads)."""
    return sum(kafkatools.end_offsets(bootstrap, f"{app_id}-{table}-changelog").values())


def count_errors(expected: Mapping[str, int], counted: Mapping[str, int]) -> tuple[int, int]:
    """``(lost, duplicate)`` counts: what keys were counted short and over, summed."""
    lost = dup = 0
    for key in set(expected) | set(counted):
        diff = counted.get(key, 0) - expected.get(key, 0)
        if diff < 0:
            lost -= diff
        else:
            dup += diff
    return lost, dup


_REPLAYING = re.compile(r"table (\S+)\[(\d+)\]: replaying changelog offsets (\d+)\.\.(\d+)")
_RECOVERED = re.compile(r"table (\S+)\[(\d+)\]: recovered (\d+) rows in [\d.]+s "
                        r"\((\d+) already held\)")


def replayed_rows(log: str, first_only: bool = False) -> int:
    """Changelog rows the shards read while opening, per the instances' log lines
    (``replaying changelog offsets A..B``: B - A + 1 rows each). ``first_only``: only
    each shard's first opening in ``log`` (a rebuild, not a later move's tail)."""
    seen: set[tuple[str, str]] = set()
    rows = 0
    for table, partition, a, b in _REPLAYING.findall(log):
        if first_only and (table, partition) in seen:
            continue
        seen.add((table, partition))
        rows += int(b) - int(a) + 1
    return rows


def recovered_rows(log: str) -> tuple[int, int]:
    """``(applied, already held)``: rows the replays applied, and those they skipped
    because the shard held them already (``recovered N rows ... (M already held)``)."""
    found = _RECOVERED.findall(log)
    return sum(int(n) for *_, n, _ in found), sum(int(m) for *_, m in found)
