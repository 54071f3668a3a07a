"""Small Kafka helpers for tests and benches: make topics, produce, read back, offsets.

Every integration test needs the same four questions answered against a real broker
(what is in this topic? what did this group commit? where does it end?), so they are
answered here once, with plain confluent-kafka clients and no consumer group where
none is needed (a group would join, rebalance and slow every check down).
"""

from __future__ import annotations

import abc
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from supervisor.devbrokers.devbroker import create_topics

_AGENTD = Path(__file__).resolve().parent.parent / "bin" / "agentd"

Headers = Sequence[tuple[str, bytes]]
Item = tuple[bytes | str | None, bytes | str | None] | tuple[
    bytes | str | None, bytes | str | None, Headers]


@dataclass(frozen=True, slots=True)
class Record:
    """One message as read back, detached from the consumer that read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


class PacedProducer(abc.ABC):
    """Produces ``rate`` messages a second from a thread until ``_stop`` is set, then
    waits up to ``flush_timeout`` for the deliveries; failures collect in ``errors``.

    A subclass's ``_emit(n)`` produces message ``n`` (0, 1, 2, ...), ``_delivered``
    as its delivery callback; ``sent`` counts the messages emitted.
    """

    def __init__(self, bootstrap: str, topic: str, *, rate: float, config: dict[str, Any],
                 name: str, pause: float, flush_timeout: float) -> None:
        self.topic = topic
        self.rate = rate
        self.sent = 0
        self.errors: list[str] = []
        self._pause = pause
        self._flush_timeout = flush_timeout
        self._stop = threading.Event()
        self._producer = Producer({"bootstrap.servers": bootstrap, **config})
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    @abc.abstractmethod
    def _emit(self, n: int) -> None:
        """Produce message number ``n``."""

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                self._emit(self.sent)
                self.sent += 1
            self._producer.poll(0)
            time.sleep(self._pause)
        left = self._producer.flush(self._flush_timeout)
        if left:
            self.errors.append(f"{left} undelivered")

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))


def unique_name(prefix: str = "t") -> str:
    """A topic or group name no other test (or earlier run on a kept broker) has used."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topic(bootstrap: str, name: str, partitions: int = 8, timeout: float = 30.0) -> str:
    """Create ``name`` with ``partitions`` partitions (replication 1); return it once every
    partition answers offset queries, so the caller can use it at once."""
    create_topics(bootstrap, {name: partitions}, timeout)
    return name


def produce(bootstrap: str, topic: str, items: Iterable[Item], *,
            partition: int | None = None, timeout: float = 60.0) -> int:
    """Produce ``(key, value[, headers])`` items, wait for every delivery; return the count.

    Batched (linger, a large local queue) so 100k messages take about a second; any
    delivery error raises instead of being lost in a callback.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 1_048_576, "acks": "all"})
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    count = 0
    for item in items:
        key, value = item[0], item[1]
        headers = list(item[2]) if len(item) > 2 else None
        while True:
            try:
                producer.produce(topic, value, key, headers=cast(Any, headers),
                                 on_delivery=on_delivery,
                                 partition=-1 if partition is None else partition)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(timeout)
    if left or errors:
        raise KafkaException(f"{left} undelivered, errors: {errors[:3]}")
    return count


def end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """``{partition: high watermark}``: the offset the next message will get."""
    consumer = _reader(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout)[1]
                for p in _partitions(consumer, topic, timeout)}
    finally:
        consumer.close()


def read_to_end(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every message now in ``topic``, each partition read from its start to its end.

    "End" is the high watermark when the call starts, so the call always returns;
    records are in partition order, then offset order.
    """
    consumer = _reader(bootstrap)
    try:
        remaining: dict[int, tuple[int, int]] = {}
        for p in _partitions(consumer, topic, timeout):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout)
            if high > low:
                remaining[p] = (low, high)
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in remaining.items()])
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_to_end({topic!r}) not done after {timeout} s; "
                                   f"partitions left: {sorted(remaining)}")
            # consume() waits for the full count or the timeout: keep the timeout short.
            for msg in consumer.consume(10_000, 0.1):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                part, offset = msg.partition(), msg.offset()
                assert part is not None and offset is not None
                if part not in remaining:
                    continue
                records.append(Record(topic, part, offset, msg.key(), msg.value(),
                                      tuple(cast(Any, msg.headers()) or ()), msg.timestamp()[1]))
                if offset + 1 >= remaining[part][1]:
                    del remaining[part]
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str,
                      timeout: float = 10.0, stable: bool = True) -> dict[int, int]:
    """``{partition: committed offset}`` of ``group`` on ``topic``; partitions never
    committed are left out (so ``sum(values())`` counts consumed messages).
    ``stable=False``: without waiting for transactions that commit offsets of the group
    to end (librdkafka asks for stable offsets only when reading committed records)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False,
                         "isolation.level": "read_committed" if stable else "read_uncommitted"})
    try:
        parts = [TopicPartition(topic, p) for p in _partitions(consumer, topic, timeout)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout)
                if tp.offset >= 0}
    finally:
        consumer.close()


def committed_equals_end(bootstrap: str, group: str, topic: str) -> bool:
    """The group committed every partition up to its end (an empty partition, never
    committed, counts as done)."""
    committed = committed_offsets(bootstrap, group, topic)
    return all(committed.get(partition, 0) == end
               for partition, end in end_offsets(bootstrap, topic).items())


def _reader(bootstrap: str) -> Consumer:
    # A group id is mandatory for the client, but assign() never joins or commits.
    return Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("reader"),
                     "enable.auto.commit": False, "enable.partition.eof": False})


def _partitions(client: Consumer, topic: str, timeout: float) -> list[int]:
    meta = client.list_topics(topic, timeout=timeout).topics[topic]
    if meta.error is not None:
        raise KafkaException(meta.error)
    return sorted(meta.partitions)


def spawn_dev_broker(*args: str, env: dict[str, str] | None = None,
                     timeout: float = 300.0) -> tuple[subprocess.Popen[str], str]:
    """Run ``agentd dev-broker ARGS`` (from this checkout) and wait for its bootstrap line.

    Returns the process (the caller stops it with SIGINT) and ``HOST:PORT``. If the
    command exits or stays silent first, raises with what it wrote on stderr.
    """
    cmd = [sys.executable, str(_AGENTD), "dev-broker", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("bootstrap="):
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"{' '.join(cmd[1:])} printed {line!r}, stderr: {err.strip()!r}")
    return proc, line.strip().removeprefix("bootstrap=")


def read_committed_values(bootstrap: str, topic: str, timeout: float = 60.0) -> list[bytes | None]:
    """The values of :func:`read_committed_records`."""
    return [value for _, value in read_committed_records(bootstrap, topic, timeout)]


def read_committed_records(bootstrap: str, topic: str, timeout: float = 60.0
                           ) -> list[tuple[bytes | None, bytes | None]]:
    """The (key, value) pairs a ``read_committed`` reader sees in ``topic`` now (aborted
    transactions' records left out), to the end of every partition.

    Transaction markers take offsets that no reader is given, so "the end" is the
    partition's end-of-file event, not the high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("reader"),
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    try:
        parts = _partitions(consumer, topic, timeout)
        plain = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("reader"),
                          "isolation.level": "read_uncommitted"})  # its end: the HW
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        left, values = set(parts), []
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_committed_values({topic!r}): {sorted(left)} left")
            for msg in consumer.consume(10_000, 0.1):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        # The end a read_committed reader sees is the last stable
                        # offset: below the high watermark, a transaction is still
                        # open (a writer that died holds it until it times out).
                        _, high = plain.get_watermark_offsets(
                            TopicPartition(topic, msg.partition()), 10)
                        if msg.offset() >= high:
                            left.discard(msg.partition())
                        continue
                    raise KafkaException(error)
                values.append((msg.key(), msg.value()))
        plain.close()
        return values
    finally:
        consumer.close()
