"""Make sure the topics agentd reads and writes exist before the consumer subscribes.

Why the supervisor does it: subscribing to a missing topic leaves the consumer idle
(or, with broker auto-creation, gives it the broker's default partition count, which
caps how many instances ``partition`` ordering can use). Agent topics, repartition
topics and dead-letter topics are created here, once, with a chosen partition count.
The embedded broker has no controller (``AdminClient.create_topics`` times out), so it
is asked directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = ["DEFAULT_PARTITIONS", "BrokerUnreachable", "connection_settings", "ensure_topics"]

log = logging.getLogger("agentd.topics")

DEFAULT_PARTITIONS = 8


#: ``[kafka]`` keys that say how to reach the cluster (TLS, SASL, sockets), as opposed to
#: consumer tuning: the supervisor's admin client and producer need them too.
_CONNECTION_PREFIXES = ("security.", "sasl.", "ssl.", "socket.", "client.", "broker.",
                        "api.version", "reconnect.", "enable.ssl", "retry.backoff")


def connection_settings(bootstrap: str, kafka: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka settings for any client of the cluster: bootstrap plus the
    connection keys of the config's ``[kafka]`` table."""
    return {"bootstrap.servers": bootstrap,
            **{k: v for k, v in kafka.items() if k.startswith(_CONNECTION_PREFIXES)}}


class BrokerUnreachable(RuntimeError):
    """Kafka did not answer at start-up (the first thing agentd asks it)."""


class _LibrdkafkaAtDebug:
    """A ``logger`` for the start-up admin client: librdkafka's lines at DEBUG.

    While Kafka is unreachable librdkafka logs a ``Connection refused`` line every
    ~50 ms for the whole ``timeout`` (hundreds of lines on stderr); the one-line
    ``BrokerUnreachable`` that follows says the same thing once.
    """

    def log(self, level: int, fmt: str, *args: Any) -> None:
        log.debug(fmt, *args)


def ensure_topics(names: Iterable[str], *, bootstrap: str, embedded: Any = None,
                  partitions: int = DEFAULT_PARTITIONS, timeout: float = 30.0,
                  settings: Mapping[str, Any] | None = None) -> list[str]:
    """Create every topic in ``names`` that does not exist; return those created.

    ``embedded`` is the in-process :class:`~supervisor.devbrokers.embedded.EmbeddedBroker` when
    the config says ``broker = "embedded"``. A topic created meanwhile by someone else
    is not an error.
    """
    wanted = sorted(set(names))
    if embedded is not None:
        for name in wanted:
            embedded.create_topic(name, partitions)
        return wanted
    conf: dict[str, Any] = {**(settings or {}), "bootstrap.servers": bootstrap,
                            "logger": _LibrdkafkaAtDebug()}
    admin = AdminClient(conf)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if isinstance(error, KafkaError) else str(error)
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap}: {reason}") from None
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics([NewTopic(name, partitions, 1) for name in missing],
                                  operation_timeout=timeout)
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise
    if created:
        log.info("created topics %s (%d partitions)", ", ".join(sorted(created)), partitions)
    return created
