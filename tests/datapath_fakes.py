"""A consumer and messages of the test's own, for driving the daemon's data path and
commit leg without a broker or a supervisor (the real rings and instances are used)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import OFFSET_INVALID, TopicPartition

_READ_TWICE = object()


class FakeMessage:
    """What ``Consumer.consume`` returns, for the calls ``DataPath.dispatch`` makes.

    ``key`` and ``value`` default to ``b"k"`` and ``b"v<offset>"``; ``headers`` may be
    an exception, which ``headers()`` raises (confluent-kafka raises ``SystemError``
    for a header name that is not UTF-8)."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None = b"k",
                 value: bytes | None = None, headers: Any = None) -> None:
        self._where = (topic, partition, offset)
        self._key = key
        self._value = b"v%d" % offset if value is None else value
        self._headers = headers

    def error(self): return None
    def topic(self): return self._where[0]
    def partition(self): return self._where[1]
    def offset(self): return self._where[2]
    def key(self): return self._key
    def value(self): return self._value
    def timestamp(self): return (0, -1)

    def headers(self):
        if isinstance(self._headers, BaseException):
            # As confluent-kafka: the first call fails; the list holding NULL it made is
            # kept, and a second call returns it without the error (reading it crashes
            # the interpreter), so reading headers twice is a bug of the caller.
            failure, self._headers = self._headers, _READ_TWICE
            raise failure
        if self._headers is _READ_TWICE:
            raise AssertionError("headers() called again after it failed: under "
                                 "confluent-kafka this returns a list holding NULL")
        return self._headers


class FakeConsumer:
    """Hands out ``queued`` messages; remembers pauses, seeks and commits, and each
    partition's position (the offset after the last message handed out), as
    confluent-kafka's ``position`` reports it."""

    def __init__(self, queued: list[FakeMessage] | None = None) -> None:
        self.queued = list(queued or [])
        self.paused: set[tuple[str, int]] = set()
        self.commits: list[dict[tuple[str, int], int]] = []
        self.positions: dict[tuple[str, int], int] = {}
        self.seeks: list[tuple[str, int, int]] = []

    def poll(self, timeout: float) -> FakeMessage | None:
        return self._handed([self.queued.pop(0)])[0] if self.queued else None

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return self._handed(taken)

    def _handed(self, messages: list[FakeMessage]) -> list[FakeMessage]:
        for msg in messages:
            self.positions[(msg.topic(), msg.partition())] = msg.offset() + 1
        return messages

    def position(self, tps: Any) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition,
                               self.positions.get((tp.topic, tp.partition), OFFSET_INVALID))
                for tp in tps]

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def pause(self, tps: Any) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, tps: Any) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in tps}

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
