"""An in-memory Kafka for a first run with nothing but Python: librdkafka's mock cluster.

Why this one: the librdkafka inside the confluent-kafka wheel (already a dependency)
exports a mock cluster (``rd_kafka_mock_cluster_new``) that speaks the Kafka protocol
on loopback ports, so *other processes* can produce, fetch, join consumer groups and
commit offsets against it. It is reached through ctypes; no Java, no extra package.

Limits (memory only; **not for production**):
- Everything is lost when the owning process exits or calls ``close()``.
- There is no controller: ``AdminClient.create_topics`` times out ("Failed while waiting
  for controller"). Topics auto-create on first use with **4 partitions**; for another
  count call ``create_topic(name, partitions)`` in the process that owns the broker.
- It is a test double: no retention, no transactions worth trusting, no quotas, and
  aiokafka (so Faust itself) cannot start against it.

The supervisor owns one when its config says ``broker = "embedded"``; ``agentd dev-broker
--embedded`` serves one until Ctrl-C.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["AUTO_CREATE_PARTITIONS", "MOCK_CONSUMER_TUNING", "EmbeddedBroker",
           "EmbeddedBrokerError", "is_mock_cluster", "mock_cluster_at"]

AUTO_CREATE_PARTITIONS = 4  # fixed inside librdkafka's mock cluster; no setter is exported
#: the mock cluster's cluster id (Metadata) starts with this, and no real Kafka's does
#: (theirs are base64 UUIDs); ``agentlib.kafka.is_mock_cluster`` is the client side's copy
MOCK_CLUSTER_ID_PREFIX = "mockCluster"


#: consumer settings against the mock cluster: it answers a Fetch only after the
#: whole ``fetch.wait.max.ms`` (librdkafka's default 500 ms), even when a record
#: arrives meanwhile, so every hop of an ``ask`` took up to half a second
MOCK_CONSUMER_TUNING = {"fetch.wait.max.ms": 10}


def is_mock_cluster(cluster_id: str | None) -> bool:
    """Whether a Metadata answer's cluster id is librdkafka's mock cluster's (which has
    no controller: no CreateTopics, no DeleteTopics)."""
    return bool(cluster_id) and str(cluster_id).startswith(MOCK_CLUSTER_ID_PREFIX)


def mock_cluster_at(settings: dict[str, Any], timeout: float = 10.0) -> bool:
    """Whether the cluster that librdkafka ``settings`` reach is a mock cluster (False
    when it does not answer: the caller's own request will say why)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        return is_mock_cluster(AdminClient(settings).list_topics(timeout=timeout).cluster_id)
    except KafkaException:
        return False

_RD_KAFKA_PRODUCER = 0
_RD_KAFKA_CONF_OK = 0


class EmbeddedBrokerError(RuntimeError):
    """librdkafka could not be loaded or refused a mock-cluster call."""


def _find_librdkafka() -> str:
    """The librdkafka that confluent-kafka itself uses (bundled in its wheel if any).

    Loading the same file means one copy of the library in the process.
    """
    import confluent_kafka

    package_dir = Path(confluent_kafka.__file__).resolve().parent
    for libs in (package_dir.parent / "confluent_kafka.libs", package_dir):
        found = sorted(libs.glob("librdkafka*.so*"))
        if found:
            return str(found[0])
    system = ctypes.util.find_library("rdkafka")
    if system is None:
        raise EmbeddedBrokerError("librdkafka not found (neither in the confluent-kafka "
                                  "wheel nor on the system)")
    return system


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(_find_librdkafka())
    p, c_int, c_char_p = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    signatures: dict[str, tuple[list[type], type | None]] = {
        "rd_kafka_conf_new": ([], p),
        "rd_kafka_conf_set": ([p, c_char_p, c_char_p, c_char_p, ctypes.c_size_t], c_int),
        "rd_kafka_conf_destroy": ([p], None),
        "rd_kafka_new": ([c_int, p, c_char_p, ctypes.c_size_t], p),
        "rd_kafka_destroy": ([p], None),
        "rd_kafka_err2str": ([c_int], c_char_p),
        "rd_kafka_mock_cluster_new": ([p, c_int], p),
        "rd_kafka_mock_cluster_destroy": ([p], None),
        "rd_kafka_mock_cluster_bootstraps": ([p], c_char_p),
        "rd_kafka_mock_topic_create": ([p, c_char_p, c_int, c_int], c_int),
    }
    for name, (argtypes, restype) in signatures.items():
        func = getattr(lib, name)
        func.argtypes = argtypes
        func.restype = restype
    return lib


class EmbeddedBroker:
    """One in-memory Kafka cluster (one broker) owned by this process.

    ``EmbeddedBroker(topics={"orders": 8}).bootstrap`` -> ``"127.0.0.1:PORT"``; any
    process may connect to it until ``close()``. Usable as a context manager.
    """

    def __init__(self, topics: dict[str, int] | None = None) -> None:
        self._lib = _load()
        self._lock = threading.Lock()
        self._rk = self._new_handle()
        self._cluster: int | None = self._lib.rd_kafka_mock_cluster_new(self._rk, 1)
        if not self._cluster:
            self._lib.rd_kafka_destroy(self._rk)
            raise EmbeddedBrokerError("rd_kafka_mock_cluster_new failed")
        self._bootstrap = self._lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()
        for name, partitions in (topics or {}).items():
            self.create_topic(name, partitions)

    def _new_handle(self) -> int:
        """A quiet producer handle: the mock cluster needs one for its bookkeeping."""
        errstr = ctypes.create_string_buffer(512)
        conf = self._lib.rd_kafka_conf_new()
        for key, value in ((b"log_level", b"3"), (b"client.id", b"agentd-embedded")):
            if self._lib.rd_kafka_conf_set(conf, key, value, errstr, 512) != _RD_KAFKA_CONF_OK:
                self._lib.rd_kafka_conf_destroy(conf)
                raise EmbeddedBrokerError(errstr.value.decode(errors="replace"))
        rk = self._lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, 512)  # owns conf now
        if not rk:
            self._lib.rd_kafka_conf_destroy(conf)
            raise EmbeddedBrokerError(f"rd_kafka_new: {errstr.value.decode(errors='replace')}")
        return int(rk)

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients in any process (loopback only)."""
        if self._cluster is None:
            raise EmbeddedBrokerError("the embedded broker is closed")
        return self._bootstrap

    def create_topic(self, name: str, partitions: int) -> None:
        """Create ``name`` with ``partitions`` partitions (the Admin API cannot, see above).

        Creating a topic that exists is not an error: callers (reply topics, DLQs,
        repartition topics) may race to make the same one.
        """
        if partitions < 1:
            raise ValueError(f"topic {name!r}: partitions must be at least 1, not {partitions}")
        with self._lock:
            if self._cluster is None:
                raise EmbeddedBrokerError("the embedded broker is closed")
            err = self._lib.rd_kafka_mock_topic_create(self._cluster, name.encode(),
                                                       partitions, 1)
        if err != 0 and err != _ERR_TOPIC_ALREADY_EXISTS:
            reason = self._lib.rd_kafka_err2str(err).decode(errors="replace")
            raise EmbeddedBrokerError(f"cannot create topic {name!r}: {reason}")

    def close(self) -> None:
        """Stop serving and free everything; every message is gone. Safe to call twice."""
        with self._lock:
            cluster, self._cluster = self._cluster, None
        if cluster is not None:
            self._lib.rd_kafka_mock_cluster_destroy(cluster)
            self._lib.rd_kafka_destroy(self._rk)

    def __enter__(self) -> EmbeddedBroker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


_ERR_TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error TOPIC_ALREADY_EXISTS
