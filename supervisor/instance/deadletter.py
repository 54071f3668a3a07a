"""Dead letters: a record the agent failed on, produced with error headers to its DLQ.

The worker's ``on_error`` policy ``dead_letter`` (and ``retry`` past its last try, when
the agent named a dead-letter topic) lands here. The record is acked only once its
dead letter is delivered, so a failed delivery is retried, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from supervisor.transport.wire import error_headers

__all__ = ["DeadLetters", "one_line"]

log = logging.getLogger("agentd.worker")


def one_line(exc: BaseException) -> str:
    """``Type: message``, first line only, at most 500 characters (logs, ERROR records)."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


class DeadLetters:
    """One agent's dead-letter producer, made on the first dead letter."""

    def __init__(self, agent_name: str, topic: str | None) -> None:
        self.agent_name = agent_name
        #: the configured dead-letter topic; None: ``<source topic>.dlq``
        self.topic = topic
        self._producer: Any = None

    async def send(self, record: Any, exc: BaseException) -> None:
        """Produce ``record`` with error headers; return on its delivery report.

        A failed delivery is retried (the record stays un-acked meanwhile): losing it
        would break the invariant.
        """
        if self._producer is None:
            from agentlib.kafka import KafkaProducer

            self._producer = KafkaProducer()
        topic = self.topic or f"{record.topic}.dlq"
        headers = [*record.headers, *error_headers(self.agent_name, record, exc)]
        while True:
            try:
                await self._producer.send(topic, record.key, record.value, headers=headers)
                log.error("agent %s: %s[%d]@%d dead-lettered to %s: %s", self.agent_name,
                          record.topic, record.partition, record.offset, topic,
                          one_line(exc))
                return
            except Exception as send_exc:
                log.error("agent %s: dead-letter to %s failed (%s); retrying",
                          self.agent_name, topic, send_exc)
                await asyncio.sleep(1.0)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``) and drop the producer."""
        if self._producer is not None:
            self._producer.close(timeout)
            self._producer = None
