"""In-memory stand-ins for the worker side of the seam and for the producer.

``Feeder`` plays the supervisor's worker: it feeds raw records to an AgentHost and
records ``on_done``/``on_error`` calls. ``FakeProducer`` keeps every send with a
future the test resolves, so a test decides when a delivery report "arrives".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentlib.kafka import RecordMetadata
from agentlib.seam import AgentHost, ErrorVerdict, RawRecord


def raw(value: bytes | None, *, offset: int, topic: str = "in", key: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = ()) -> RawRecord:
    """A raw record as the worker would hand it over."""
    return RawRecord(topic, 0, offset, None, key, value, headers)


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: Any
    future: asyncio.Future[RecordMetadata]

    def deliver(self) -> None:
        self.future.set_result(RecordMetadata(self.topic, 0, 0, None))


@dataclass
class FakeProducer:
    """Records sends; deliveries complete when the test says (or at once, if auto)."""

    auto_deliver: bool = False
    sent: list[Sent] = field(default_factory=list)

    def send_soon(self, topic: str, key: bytes | None, value: bytes | None,
                  partition: int | None = None, headers: Any = None
                  ) -> asyncio.Future[RecordMetadata]:
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        sent = Sent(topic, key, value, partition, headers, future)
        self.sent.append(sent)
        if self.auto_deliver:
            sent.deliver()
        return future

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None = None, headers: Any = None) -> RecordMetadata:
        return await self.send_soon(topic, key, value, partition, headers)

    def send_unconfirmed(self, topic: str, key: bytes | None, value: bytes | None,
                         partition: int | None = None, headers: Any = None, *,
                         failure: asyncio.Future[Any]) -> None:
        """As KafkaProducer's: recorded like a send; a failed delivery fails ``failure``."""
        def report(delivery: asyncio.Future[RecordMetadata]) -> None:
            error = None if delivery.cancelled() else delivery.exception()
            if error is not None and not failure.done():
                failure.set_exception(error)

        self.send_soon(topic, key, value, partition, headers).add_done_callback(report)


class Feeder:
    """The worker's side: feeds records, logs done offsets and error-policy calls."""

    def __init__(self, agent: Any, *, verdicts: list[ErrorVerdict] | None = None,
                 producer: Any = None,
                 on_error: Callable[[RawRecord, BaseException, int], Any] | None = None
                 ) -> None:
        self.done: list[int] = []
        self.errors: list[tuple[int, BaseException, int]] = []
        self.verdicts = list(verdicts or [])
        self._custom_on_error = on_error
        self.host = AgentHost(agent, on_done=self._on_done, on_error=self._on_error,
                              producer=producer)

    def _on_done(self, record: RawRecord) -> None:
        self.done.append(record.offset)

    async def _on_error(self, record: RawRecord, exc: BaseException, attempt: int
                        ) -> ErrorVerdict:
        self.errors.append((record.offset, exc, attempt))
        if self._custom_on_error is not None:
            verdict: ErrorVerdict = await self._custom_on_error(record, exc, attempt)
            return verdict
        return self.verdicts.pop(0) if self.verdicts else ErrorVerdict.ACK

    async def settle(self) -> None:
        """Let the agent run until it waits for input with nothing queued."""
        for _ in range(100):
            await asyncio.sleep(0)
            if self.host.idle.is_set():
                for _ in range(5):  # delivery callbacks scheduled by the last step
                    await asyncio.sleep(0)
                if self.host.idle.is_set():
                    return
        raise AssertionError("agent never became idle")


class FakeHandle:
    """A ``confluent_kafka.Producer`` stand-in for a real :class:`KafkaProducer`: it
    keeps each message and its ``on_delivery``; the test reports them by hand."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, bytes | None, int, Any]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None, *,
                partition: int = -1, headers: Any = None, on_delivery: Any = None) -> None:
        self.produced.append((topic, key, value, partition, on_delivery))

    def report(self, index: int, error: Any = None, offset: int = 0) -> None:
        """librdkafka's delivery report for the ``index``-th message (error None: ok)."""
        topic, key, value, partition, on_delivery = self.produced[index]
        on_delivery(error, FakeMessage(topic, key, value, partition, offset))


@dataclass
class FakeMessage:
    """What a delivery report carries, as ``confluent_kafka.Message`` offers it."""

    _topic: str
    _key: bytes | None
    _value: bytes | None
    _partition: int
    _offset: int

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def counting_producer() -> tuple[Any, FakeHandle]:
    """A real ``agentlib.kafka.KafkaProducer`` (``send_counted`` and all) over a
    :class:`FakeHandle`: no broker, no poll thread; ``producer._dispatch_reports()``
    hands completed batches to their loop, as the poll thread would."""
    import agentlib.kafka as kafka

    producer = kafka.KafkaProducer("kafka://unused:1")
    handle = FakeHandle()
    producer._handle, producer._pid = handle, kafka._pid  # type: ignore[assignment]
    return producer, handle
