"""Records the supervisor must fail itself: too large for a ring, or poison.

Workers apply the agent's ``on_error`` policy to exceptions they see. Two failures
never reach a worker: a record larger than the instance's ring can hold, and a poison
record (its instance crashed ``poison_after`` times while it was alone in flight).
The supervisor applies the same policy to those, so neither becomes a crash loop nor a
silent skip:

- ``log``: one error line naming the record; the offset is acked.
- ``dead_letter``: produced (raw key, value, original headers plus the ``agentd-*``
  error headers) to the DLQ; acked only on the delivery report; a failed delivery is
  retried, never dropped.
- ``retry``: retrying cannot make a record smaller or stop it from crashing its
  worker; treated as ``dead_letter`` when a ``dead_letter_topic`` is configured, else
  as ``log``.
- ``crash``: the daemon stops non-zero; the offset is never acked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Producer

from supervisor.transport import wire
from supervisor.transport.wire import error_headers

__all__ = ["FailedRecord", "RecordFailures"]

log = logging.getLogger("agentd.failures")


class FailedRecord:
    """A record being failed: where it came from and its raw bytes."""

    __slots__ = (
        "agent",
        "headers",
        "key",
        "lane",
        "offset",
        "partition",
        "reason",
        "topic",
        "value",
    )

    def __init__(self, agent: Any, topic: str, encoded: bytes, reason: str) -> None:
        decoded = wire.decode_record(encoded)
        self.agent = agent
        self.lane: int = agent.lane
        self.topic = topic
        self.partition = decoded.partition
        self.offset = decoded.offset
        self.key = decoded.key
        self.value = decoded.value
        self.headers = list(decoded.headers)
        self.reason = reason


class RecordFailures:
    """Applies ``on_error`` to failed records; ``on_done(record)`` acks one."""

    def __init__(self, bootstrap: str, on_done: Callable[[FailedRecord], None],
                 on_crash: Callable[[str], None],
                 settings: Mapping[str, Any] | None = None) -> None:
        self._bootstrap = bootstrap
        self._settings = dict(settings or {})
        self._on_done = on_done
        self._on_crash = on_crash
        self._producer: Producer | None = None

    def fail(self, record: FailedRecord) -> None:
        config = record.agent.config
        policy = config.on_error
        if policy == "retry":
            policy = "dead_letter" if config.dead_letter_topic else "log"
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if policy == "crash":
            log.critical("agent %s: %s at %s; on_error=crash stops agentd",
                         record.agent.name, record.reason, where)
            self._on_crash(f"{record.reason} at {where}")
        elif policy == "dead_letter":
            self._produce(record)
        else:
            log.error("agent %s: %s at %s; skipped (on_error=log)", record.agent.name,
                      record.reason, where)
            self._on_done(record)

    def _produce(self, record: FailedRecord) -> None:
        if self._producer is None:
            self._producer = Producer({**self._settings, "bootstrap.servers": self._bootstrap,
                                       "enable.idempotence": True, "linger.ms": 5})
        topic = record.agent.config.dead_letter_topic_for(record.topic)
        headers: list[tuple[str, str | bytes | None]] = [
            *record.headers, *error_headers(record.agent.name, record, record.reason)]

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                log.error("dead-letter of %s[%d]@%d to %s failed (%s); retrying",
                          record.topic, record.partition, record.offset, topic, err)
                self._produce(record)
                return
            log.error("agent %s: %s at %s[%d]@%d; dead-lettered to %s", record.agent.name,
                      record.reason, record.topic, record.partition, record.offset, topic)
            self._on_done(record)

        self._producer.produce(topic, record.value, record.key, headers=headers,
                               on_delivery=delivered)

    def poll(self) -> None:
        """Serve delivery reports (from the supervisor loop; never blocks)."""
        if self._producer is not None:
            self._producer.poll(0)

    def close(self, timeout: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
            self._producer = None
