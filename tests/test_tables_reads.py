"""Where a table read looks, and which shard a write lands in, while an agent processes a
record: the in-memory runtime and hand-made current events (no broker)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import agentlib as faust
from agentlib.events import new_event, set_current_event
from agentlib.rawrecord import new_raw_record
from agentlib.tables import runtime as runtimes

app = faust.App("tests-tables-reads")
counts = app.Table("counts", default=int)


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[runtimes.LocalRuntime]:
    before = runtimes.current()
    runtime = runtimes.LocalRuntime()
    runtimes.install(runtime)
    yield runtime
    set_current_event(None)
    runtimes.install(before)


def processing(key: bytes, partition: int, offset: int = 0) -> Any:
    """Make a record of ``key`` in ``partition`` the one being processed."""
    record = new_raw_record("words", partition, offset, None, key, b"{}", ())
    event = new_event(key, {}, {}, record, None, None, None)
    set_current_event(event)
    return event


def stored(runtime: runtimes.LocalRuntime, partition: int) -> dict[bytes, bytes]:
    return dict(runtime.shard(counts, partition).items())


def test_a_write_lands_in_the_shard_of_the_record_being_processed(
        fresh_runtime: runtimes.LocalRuntime) -> None:
    event = processing(b"a", 2)
    counts[event.key] += 1
    counts[event.key] += 1
    event = processing(b"b", 5)  # the next record, of another partition
    counts[event.key] += 1
    assert stored(fresh_runtime, 2) == {b'"a"': b"2"}
    assert stored(fresh_runtime, 5) == {b'"b"': b"1"}


def test_the_records_own_key_is_read_from_its_partition_only(
        fresh_runtime: runtimes.LocalRuntime) -> None:
    # Rows another partition's records wrote: "a" (a key that by the co-partitioning
    # rule cannot be partition 0's) and "other".
    event = processing(b"a", 3)
    counts[event.key] = 7
    event = processing(b"other", 3)
    counts[event.key] = 9
    event = processing(b"a", 0)
    assert counts[event.key] == 0       # the record's own key: its partition only
    assert counts["other"] == 9          # any other key: the other shards are searched
    set_current_event(None)
    assert counts.get("a") == 7          # outside an agent: every shard is searched
