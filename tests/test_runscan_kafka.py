"""The compiled run scan reads real confluent-kafka Messages from their C struct
(issue 21): on messages consumed from a real broker it takes the same runs and writes
the same bytes as with the struct reads off and as the pure-Python loop, for keys and
values that are None, empty or long, headers, explicit timestamps and several
partitions; and a type whose layout does not check out is read through its methods."""

from __future__ import annotations

import copy
import importlib.metadata
import time
import uuid
from typing import Any

import kafkatools
import pytest
from confluent_kafka import Consumer
from datapath_fakes import FakeMessage

from supervisor.transport import runscan

compiled = pytest.importorskip("supervisor.transport._runscan",
                               reason="supervisor/transport/_runscan not built")


def _items() -> list[tuple[Any, ...]]:
    items: list[tuple[Any, ...]] = []
    for i in range(300):
        key = [None, b"", b"k%d" % i, b"K" * 300][i % 4]
        value = [b'{"n": %d}' % i, None, b"", b"v" * (1000 + i)][(i // 4) % 4]
        headers = [("h", b"%d" % i), ("none", None)] if i % 7 == 0 else None
        items.append((key, value, headers) if headers else (key, value))
    return items


@pytest.fixture(scope="module")
def consumed(kafka_bootstrap: str) -> list[list[Any]]:
    """Batches as ``Consumer.consume`` returned them: 300 messages on 3 partitions."""
    topic = kafkatools.create_topic(kafka_bootstrap, kafkatools.unique_name("runscan"), 3)
    kafkatools.produce(kafka_bootstrap, topic, _items())
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap,
                         "group.id": f"runscan-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    batches: list[list[Any]] = []
    deadline = time.monotonic() + 60
    try:
        while sum(map(len, batches)) < 300 and time.monotonic() < deadline:
            batch = [m for m in consumer.consume(50, 1.0) if m.error() is None]
            if batch:
                batches.append(batch)
    finally:
        consumer.close()
    assert sum(map(len, batches)) == 300
    return batches


def _scan_all(loop: Any, batches: list[list[Any]]) -> list[tuple[int, list, list, list]]:
    """Every run of every batch, as ``DataPath.dispatch`` walks them."""
    out = []
    for batch in batches:
        i = 0
        while i < len(batch):
            first = batch[i]
            offsets: list[int] = []
            keys: list[bytes | None] = []
            records: list[bytes] = []
            stop = loop(batch, i, first.topic(), first.partition(), 5, offsets, keys,
                        records)
            out.append((stop, offsets, keys, records))
            i = stop if stop > i else i + 1
    return out


def test_struct_reads_write_what_the_methods_and_the_pure_loop_write(consumed):
    was = compiled.direct_reads()
    try:
        compiled.direct_reads(True)
        direct = _scan_all(compiled.scan_run, consumed)
        # The layout checked out on confluent-kafka's own Message: the reads above
        # went through the struct, on every release whose layout is known.
        known = compiled.known_layout(importlib.metadata.version("confluent-kafka"))
        assert compiled.direct_type() is (type(consumed[0][0]) if known else None)
        compiled.direct_reads(False)
        methods = _scan_all(compiled.scan_run, consumed)
    finally:
        compiled.direct_reads(was)
    pure = _scan_all(runscan.scan_run_py, consumed)
    assert direct == methods == pure
    verdicts = {compiled.layout_matches(msg) is (None if msg.headers() else True)
                for batch in consumed for msg in batch}
    assert verdicts == {True}  # with headers it cannot tell; without, it matches
    assert sum(len(run[1]) for run in direct) == 300
    assert len({run[1][0] for run in direct}) > 1  # several runs, several partitions


class Message:
    """Named as confluent-kafka's and as large, but its slots are not that layout."""

    __slots__ = tuple(f"slot{i}" for i in range(14))

    def __init__(self, partition: int, offset: int) -> None:
        self.slot0 = FakeMessage("t", partition, offset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.slot0, name)

    def __deepcopy__(self, memo: Any) -> Message:
        return Message(self.slot0.partition(), self.slot0.offset())


def test_a_type_whose_layout_does_not_check_out_is_read_through_its_methods():
    batch = [Message(0, 1), Message(0, 2), Message(1, 3)]
    offsets: list[int] = []
    records: list[bytes] = []
    assert compiled.scan_run(copy.deepcopy(batch), 0, "t", 0, 0, offsets, None,
                             records) == 2
    assert offsets == [1, 2] and compiled.direct_type() is not Message
    assert compiled.layout_matches(Message(0, 1)) is False
    assert compiled.layout_matches(FakeMessage("t", 0, 1)) is False  # a smaller struct
    expected: list[bytes] = []
    runscan.scan_run_py(batch, 0, "t", 0, 0, [], None, expected)
    assert records == expected


@pytest.mark.parametrize(("version", "known"), [
    ("2.16.2", True), ("2.1.0", True), ("2.6.1", True), ("2.0.2", False),
    ("2.17.0", False), ("3.0.0", False), ("", False), ("2.x", False)])
def test_struct_reads_only_on_releases_whose_layout_is_known(version, known):
    assert compiled.known_layout(version) is known
