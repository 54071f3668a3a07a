"""Make sure the topics agentd reads and writes exist before the consumer subscribes.

Why the supervisor does it: subscribing to a missing topic leaves the consumer idle
(or, with broker auto-creation, gives it the broker's default partition count, which
caps how many instances ``partition`` ordering can use). Agent topics, repartition
topics and dead-letter topics are created here, once, with the partition count the
app declares (``partitions=``) or the default. A topic that exists with another count
than the declared one stops the start (:class:`TopicMismatch`): repartitioning an
existing topic is the operator's decision. The embedded broker has no controller
(``AdminClient.create_topics`` times out), so the one this process owns is asked
directly, and one served by another process (``agentd dev-broker --embedded``) is
recognised by its cluster id and left to auto-create topics on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from supervisor.devbrokers.embedded import AUTO_CREATE_PARTITIONS, is_mock_cluster

__all__ = ["DEFAULT_PARTITIONS", "RECONNECT_TUNING", "BrokerUnreachable", "TopicMismatch",
           "compare_partitions", "connection_settings", "daemon_client_settings",
           "ensure_topics"]

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


#: Reconnect backoff (librdkafka: 100 ms doubling up to 10 s) of every client the daemon
#: keeps open (its consumer, the instances' producers, the dead-letter producer, the
#: leader election and the table keeper). During a broker outage the backoff grows to
#: its maximum, so each client could notice the broker back up to 10 s late (issue 20);
#: with 1 s at most a second, for one connection attempt a second per client while the
#: broker is away. ``[kafka]`` overrides it.
RECONNECT_TUNING: dict[str, Any] = {"reconnect.backoff.max.ms": 1000}


def daemon_client_settings(bootstrap: str, kafka: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`connection_settings` for a client that lives as long as the daemon and
    must ride out a broker outage: with :data:`RECONNECT_TUNING` under the config's keys."""
    return {"bootstrap.servers": bootstrap, **RECONNECT_TUNING,
            **connection_settings(bootstrap, kafka)}


#: Group session defaults (librdkafka: 45 s / 3 s) for every group agentd joins, the data
#: consumer's and the leader election's: a kill -9'd daemon's partitions, and its
#: leadership, move in ~6 s (docs/decisions.md). ``[kafka]`` overrides them.
SESSION_TUNING: dict[str, Any] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


class BrokerUnreachable(RuntimeError):
    """Kafka did not answer at start-up (the first thing agentd asks it)."""


class TopicMismatch(ValueError):
    """A topic exists in Kafka with another partition count than the app declares."""


def compare_partitions(existing: Mapping[str, int], declared: Mapping[str, int]) -> None:
    """Raise :class:`TopicMismatch` (one line) for the first declared topic that exists
    in Kafka (``existing``: name -> partition count) with another count."""
    for name in sorted(declared):
        have = existing.get(name)
        if have is not None and have != declared[name]:
            raise TopicMismatch(
                f"topic {name!r} has {have} partitions in Kafka but the app declares "
                f"{declared[name]} (partitions=): declare {have}, or delete and recreate "
                f"the topic")


class _LibrdkafkaAtDebug:
    """A ``logger`` for the start-up admin client: librdkafka's lines at DEBUG.

    While Kafka is unreachable librdkafka logs a ``Connection refused`` line every
    ~50 ms for the whole ``timeout`` (hundreds of lines on stderr); the one-line
    ``BrokerUnreachable`` that follows says the same thing once.
    """

    def log(self, level: int, fmt: str, *args: Any) -> None:
        log.debug(fmt, *args)


def partition_counts(bootstrap: str, settings: Mapping[str, Any] | None = None,
                     timeout: float = 30.0) -> dict[str, int]:
    """Every existing topic's partition count (a changelog follows its source's)."""
    conf: dict[str, Any] = {**(settings or {}), "bootstrap.servers": bootstrap,
                            "logger": _LibrdkafkaAtDebug()}
    try:
        metadata = AdminClient(conf).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap}: {_reason(exc)}") from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def ensure_topics(names: Iterable[str], *, bootstrap: str, embedded: Any = None,
                  partitions: int = DEFAULT_PARTITIONS, counts: Mapping[str, int] | None = None,
                  timeout: float = 30.0, settings: Mapping[str, Any] | None = None,
                  compacted: Iterable[str] = ()) -> list[str]:
    """Create every topic in ``names`` (and in ``counts``) that does not exist; return
    those created.

    ``counts`` holds declared partition counts (others get ``partitions``); an existing
    topic with another count raises :class:`TopicMismatch`. ``embedded`` is the
    in-process :class:`~supervisor.devbrokers.embedded.EmbeddedBroker` when the config
    says ``broker = "embedded"``. A topic created meanwhile by someone else is not an
    error.
    """
    counts = counts or {}
    wanted = sorted(set(names) | set(counts))
    if embedded is not None:
        for name in wanted:
            embedded.create_topic(name, counts.get(name, partitions))
        return wanted
    conf: dict[str, Any] = {**(settings or {}), "bootstrap.servers": bootstrap,
                            "logger": _LibrdkafkaAtDebug()}
    admin = AdminClient(conf)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap}: {_reason(exc)}") from None
    compare_partitions({name: len(topic.partitions)
                        for name, topic in metadata.topics.items()}, counts)
    missing = [name for name in wanted if name not in metadata.topics]
    if not missing:
        return []
    if is_mock_cluster(metadata.cluster_id):
        return _auto_create(admin, missing, bootstrap, counts, timeout)
    compact = set(compacted)  # table changelogs: the latest row per key is what counts
    futures = admin.create_topics(
        [NewTopic(name, counts.get(name, partitions), 1,
                  config={"cleanup.policy": "compact"} if name in compact else {})
         for name in missing], operation_timeout=timeout)
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
        by_count: dict[int, list[str]] = {}
        for name in sorted(created):
            by_count.setdefault(counts.get(name, partitions), []).append(name)
        log.info("created topics %s", "; ".join(f"{', '.join(names)} ({count} partitions)"
                                                for count, names in sorted(by_count.items())))
    return created


def _auto_create(admin: AdminClient, missing: list[str], bootstrap: str,
                 counts: Mapping[str, int], timeout: float) -> list[str]:
    """librdkafka's mock cluster (``agentd dev-broker --embedded``) has no CreateTopics:
    a metadata request for each topic auto-creates it with the mock's default count."""
    log.warning("Kafka at %s is librdkafka's mock cluster (agentd dev-broker --embedded), "
                "which cannot create topics: %s auto-created with %d partitions each%s",
                bootstrap, ", ".join(missing), AUTO_CREATE_PARTITIONS,
                "; declared partition counts are not applied (pre-create with agentd "
                "dev-broker --embedded --topic NAME:N)"
                if any(name in counts for name in missing) else "")
    for name in missing:
        try:
            admin.list_topics(topic=name, timeout=timeout)
        except KafkaException as exc:
            raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap}: {_reason(exc)}") \
                from None
    return missing


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)
