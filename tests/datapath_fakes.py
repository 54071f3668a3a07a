"""A consumer and messages of the test's own, for driving the daemon's data path and
commit leg without a broker or a supervisor (the real rings and instances are used)."""

from __future__ import annotations

from typing import Any


class FakeMessage:
    """What ``Consumer.consume`` returns, for the calls ``DataPath.dispatch`` makes."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def error(self): return None
    def topic(self): return self._where[0]
    def partition(self): return self._where[1]
    def offset(self): return self._where[2]
    def key(self): return b"k"
    def value(self): return b"v%d" % self._where[2]
    def headers(self): return None
    def timestamp(self): return (0, -1)


class FakeConsumer:
    """Hands out ``queued`` messages; remembers pauses and commits."""

    def __init__(self, queued: list[FakeMessage] | None = None) -> None:
        self.queued = list(queued or [])
        self.paused: set[tuple[str, int]] = set()
        self.commits: list[dict[tuple[str, int], int]] = []

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.queued.pop(0) if self.queued else None

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken

    def pause(self, tps: Any) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, tps: Any) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in tps}

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
