"""The process's Kafka producer, made for asyncio: ``await send(...)`` resolves on delivery.

agentd's invariant ("commit only what every sink acknowledged") needs the *delivery
report* of every message an agent produces, and client scripts need the same for
``cast``/``ask``. confluent-kafka only reports deliveries from inside ``poll()``/
``flush()``, so something has to poll. This module owns that, once per process:

* **Lazy, per process.** Nothing touches librdkafka at import or construction. The
  handle is made on the first send and belongs to the process that made it: after
  ``fork()`` the child sees a different pid, forgets the parent's handle without
  touching it (its threads did not survive the fork) and makes its own.
* **Delivery reports from a poll thread, resolved in batches.** See
  :class:`KafkaProducer` for why a thread beats polling from the event loop.
* **No batching delay; batches form under load anyway.** ``linger.ms`` is
  :data:`LINGER_MS` (0, as Faust's ``producer_linger``) and the local queue holds a
  million messages. A lone message (an ``ask``'s request, its reply) goes out at once:
  with librdkafka's 5 ms default an ask paid up to 10 ms of batching (request here,
  reply in the agent's process), twice Faust's whole round trip. Under load nothing
  is lost by it: while earlier produce requests are in flight (idempotence allows 5
  per connection) the next messages queue up and leave as one batch; measured with
  200k ``send_soon`` of 120 B on 8 partitions, 0 ms was as fast as 5 ms (~120k msg/s,
  bounded by Python). The ask benchmark states this value. The exception is an agentd
  instance's changelog producer (:data:`CHANGELOG_LINGER_MS`): table writes hold only
  their record's commit, and one request per write kept the broker busy.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer

from agentlib.deliveries import Batches, RowsReport, Settle, send_rows

__all__ = [
    "CHANGELOG_LINGER_MS",
    "DEFAULT_BROKER",
    "LINGER_MS",
    "MOCK_CONSUMER_TUNING",
    "PRODUCER_CONFIG",
    "KafkaProducer",
    "RecordMetadata",
    "bootstrap_servers",
    "is_mock_cluster",
    "note_cluster",
    "settle_on_owning_loops",
]

log = logging.getLogger(__name__)

#: Faust's default broker, used when neither ``AGENTD_BROKER`` nor ``broker=`` is given.
DEFAULT_BROKER = "kafka://localhost:9092"

#: Batching delay of every agentlib producer, in milliseconds: none, so that request and
#: reply of an ``ask`` are not held back (see the module docstring).
LINGER_MS = 0

#: Batching delay of an agentd instance's changelog producer (table writes), in
#: milliseconds. A table write holds only its record's commit, never a reply, so it can
#: wait for a batch: with 0 every write was its own produce request and the broker
#: spent most of a core on them (bench/tables.py; docs/decisions.md).
CHANGELOG_LINGER_MS = 5

#: librdkafka settings of every agentlib producer; ``KafkaProducer(config=...)`` adds to them.
PRODUCER_CONFIG: Mapping[str, Any] = {
    "linger.ms": LINGER_MS,
    # A big local queue: BufferError (queue full) should mean "the broker is not
    # keeping up", never "a join() of 100k values was issued at once".
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    # Retries without duplicates or reordering: a sink's message is delivered once.
    "enable.idempotence": True,
}

#: How long interpreter exit waits for queued messages (``close`` runs from atexit).
_EXIT_FLUSH_TIMEOUT = 10.0

Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]

# The pid of this process, kept current by an at-fork hook so that the per-send
# "was I forked?" check is an attribute compare, not a getpid() system call.
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def client_settings() -> dict[str, Any]:
    """How to reach the cluster beyond its address (TLS, SASL, ...): the supervisor puts
    its config's ``[kafka]`` connection keys in ``AGENTD_KAFKA_CLIENT`` (JSON) for
    every process of an app; empty elsewhere."""
    raw = os.environ.get("AGENTD_KAFKA_CLIENT")
    return dict(json.loads(raw)) if raw else {}


def bootstrap_servers(broker: str | Sequence[str] | None = None) -> str:
    """``h:p,h:p`` for librdkafka, from ``AGENTD_BROKER`` or else ``broker`` (Faust's URLs).

    ``AGENTD_BROKER`` wins so that the supervisor can point every process of an app
    (workers, client scripts, ``@app.command``) at its cluster without code changes.
    Accepts what Faust accepts for ``broker=``: ``kafka://h:p``, several URLs joined
    by ``,`` or ``;``, or a list of them; a missing port means 9092.
    """
    raw: str | Sequence[str] = os.environ.get("AGENTD_BROKER") or broker or DEFAULT_BROKER
    parts = [raw] if isinstance(raw, str) else list(raw)
    hosts: list[str] = []
    for part in parts:
        for url in str(part).replace(";", ",").split(","):
            url = url.strip()
            if not url:
                continue
            host = url.split("://", 1)[1] if "://" in url else url
            host = host.rstrip("/")
            if ":" not in host.rsplit("]", 1)[-1]:
                host = f"{host}:9092"
            hosts.append(host)
    if not hosts:
        raise ValueError(f"no broker address in {raw!r}")
    return ",".join(hosts)


#: consumer settings against the mock cluster, which answers a Fetch only after the
#: whole ``fetch.wait.max.ms`` (default 500 ms) even when a record arrives meanwhile
MOCK_CONSUMER_TUNING: Mapping[str, Any] = {"fetch.wait.max.ms": 10, "fetch.error.backoff.ms": 10}


#: ``bootstrap.servers`` values this process saw answer as a mock cluster
_mock_bootstraps: set[str] = set()


def is_mock_cluster(cluster_id: str | None) -> bool:
    """Whether a Metadata answer's cluster id is librdkafka's mock cluster's (agentd's
    embedded broker): it has no controller, so no CreateTopics or DeleteTopics. The
    daemon's copy of this rule is ``supervisor.devbrokers.embedded.is_mock_cluster``."""
    return bool(cluster_id) and str(cluster_id).startswith("mockCluster")


def note_cluster(bootstrap: str, cluster_id: str | None) -> bool:
    """Remember whether ``bootstrap`` is a mock cluster (from a Metadata answer); return
    it. A producer made afterwards for a mock cluster is not idempotent: librdkafka's
    idempotent producer waits 500 ms for its producer id on a fresh connection (the
    whole cost of a one-shot ``agentd send``), and an in-memory mock loses no
    acknowledgement that idempotence would guard against."""
    mock = is_mock_cluster(cluster_id)
    if mock:
        _mock_bootstraps.add(bootstrap)
    return mock


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a delivered message landed (what ``send`` resolves to)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


# (future, error, message) triples handed from whichever thread ran the delivery
# callback to the event loop that owns the future.
_Report = tuple["asyncio.Future[Any]", Any, Any]


class KafkaProducer:
    """An asyncio-friendly wrapper over one ``confluent_kafka.Producer`` per process.

    Why a poll thread and not polling from the event loop: librdkafka runs delivery
    callbacks only inside ``poll()``. Polling from the loop needs either a timer
    that fires every millisecond or so while messages are in flight (CPU on an idle
    worker, and each delivery waits for the next tick) or a ``poll(0)`` after every
    send (a C call per message that mostly finds nothing). The thread instead sits
    in ``poll(0.2)`` with the GIL released, costs nothing while idle, and returns as
    soon as reports arrive; it queues them and wakes the owning loop **once per
    batch** with ``call_soon_threadsafe`` (one self-pipe write per batch, not per
    message), where the futures are resolved. ``produce()`` itself is thread-safe in
    librdkafka, so sends stay on the loop thread with no lock.
    """

    def __init__(self, broker: str | Sequence[str] | None = None, *,
                 config: Mapping[str, Any] | None = None) -> None:
        self._broker = broker
        self._extra_config = dict(config or {})
        self._pid = -1
        self._handle: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        self._reports: collections.deque[_Report] = collections.deque()
        self._batches = Batches()  # send_counted's
        self._exit_hook = False

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` this producer uses (resolved now, env first)."""
        return bootstrap_servers(self._broker)

    def config(self) -> dict[str, Any]:
        """The full librdkafka configuration the handle is (or will be) made with."""
        bootstrap = self.bootstrap
        mock = {"enable.idempotence": False} if bootstrap in _mock_bootstraps else {}
        return {"bootstrap.servers": bootstrap, **client_settings(), **PRODUCER_CONFIG,
                **mock, "error_cb": _log_client_error, **self._extra_config}

    def _ensure(self) -> Producer:
        """This process's handle, made on first use (and again in a forked child)."""
        if self._pid != _pid or self._handle is None:
            if self._pid != _pid:
                # Forked: the parent's handle and poll thread are not ours to touch.
                self._handle = None
                self._reports = collections.deque()
                self._batches = Batches()
            self._pid = _pid
            self._handle = Producer(self.config())
            self._stop_polling = threading.Event()
            self._poller = threading.Thread(
                target=self._poll_until_stopped, args=(self._handle, self._stop_polling),
                name="agentlib-producer-poll", daemon=True)
            self._poller.start()
            if not self._exit_hook:
                # A client script that ends right after send_soon() still delivers.
                atexit.register(self.close, _EXIT_FLUSH_TIMEOUT)
                self._exit_hook = True
        return self._handle

    def send_soon(self, topic: str, key: bytes | None, value: bytes | None,
                  partition: int | None = None, headers: Headers | None = None, *,
                  timestamp_ms: int | None = None) -> asyncio.Future[RecordMetadata]:
        """Queue one message and return the future of its delivery report, at once.

        For batches: issue many, then ``await asyncio.gather(...)``. Must be called
        from a running event loop (the future belongs to it). Raises ``BufferError``
        when the local queue is full; ``send`` waits instead. ``timestamp_ms``: CreateTime.
        """
        handle = self._ensure()
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        handle.produce(topic, value, key, partition=-1 if partition is None else partition,
                       headers=_plain_headers(headers), timestamp=timestamp_ms or 0,
                       on_delivery=partial(self._on_delivery, future))
        return future

    def send_unconfirmed(self, topic: str, key: bytes | None, value: bytes | None,
                         partition: int | None = None, headers: Headers | None = None, *,
                         failure: asyncio.Future[Any], timestamp_ms: int | None = None) -> None:
        """Queue one message whose success nobody awaits; a failed delivery sets
        ``KafkaException`` on ``failure`` (unless that future is done by then).

        For ``ask``: its answer proves the request was delivered, so resolving a
        delivery future as well cost each ask a wake-up of its event loop (self-pipe
        write, loop iteration, task step) while the request was on its way through the
        supervisor and worker; a successful report now ends on the poll thread. Raises
        ``BufferError`` when the local queue is full, as :meth:`send_soon` does.
        """
        self._ensure().produce(topic, value, key,
                               partition=-1 if partition is None else partition,
                               headers=_plain_headers(headers), timestamp=timestamp_ms or 0,
                               on_delivery=partial(self._on_failed_delivery, failure))

    def send_counted(self, topic: str, key: bytes | None, value: bytes | None,
                     partition: int | None, headers: Headers | None, token: Any,
                     settle: Settle, track_offsets: bool = False) -> None:
        """Queue one message whose report is only counted: once every message this loop
        turn sent for ``settle`` is reported, ``settle(batch)`` runs on this loop once
        (``batch.outcome()``: the ``token`` of each delivered and each failed message;
        with ``track_offsets``, ``batch.offsets()``). Raises ``BufferError`` as
        :meth:`send_soon` does (then nothing was queued).

        :meth:`send_soon` without a future, a callback object or a loop wake-up per
        message, for streams of messages that each hold a record's ack (sink outputs;
        a table flush's rows use :meth:`send_rows`): see :mod:`agentlib.deliveries`.
        """
        handle = self._handle
        if handle is None or self._pid != _pid:
            handle = self._ensure()
        batch = self._batches.open.get(settle)
        if batch is None:
            batch = self._batches.start(settle, track_offsets)
        handle.produce(topic, value, key, partition=-1 if partition is None else partition,
                       headers=headers if headers is None or type(headers) is list
                       else _plain_headers(headers), on_delivery=batch)
        batch.entries.append((token, topic, key, value))  # (DeliveryBatch.sent, inlined)

    def send_rows(self, topic: str, partition: int, rows: Iterable[tuple[bytes, Any]],
                  headers: Any, last: Any, settle: Callable[[RowsReport], None],
                  token: Any) -> list[Any]:
        """:func:`agentlib.deliveries.send_rows` on this producer's handle."""
        return send_rows(self._ensure(), self._batches, topic, partition, rows, headers,
                         last, settle, token)

    @property
    def transactional(self) -> bool:
        """Made with a ``transactional.id`` (an agentd instance under exactly once)."""
        return "transactional.id" in self._extra_config

    def send_in_transaction(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Queue one message of the open transaction with no delivery report: the
        commit is its report (``commit_transaction`` waits for every message and fails
        if one failed, and then none of them is ever visible to ``read_committed``
        readers). Raises ``BufferError`` as :meth:`send_soon` does."""
        handle = self._handle
        if handle is None or self._pid != _pid:
            handle = self._ensure()
        handle.produce(topic, value, key)

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None = None,
                   headers: Headers | None = None) -> RecordMetadata:
        """Produce one message; return when the broker acknowledged it.

        A failed delivery raises ``KafkaException``. A full local queue is waited
        out (backpressure), not raised.
        """
        while True:
            try:
                future = self.send_soon(topic, key, value, partition, headers)
            except BufferError:
                await asyncio.sleep(0.01)
                continue
            return await future

    def flush(self, timeout: float = 30.0) -> int:
        """Block until every queued message is delivered or ``timeout`` passes.

        Returns how many are still undelivered (0: all done). Blocking: call it at
        shutdown or from a thread, not in the middle of a busy event loop.
        """
        if self._handle is None or self._pid != _pid:
            return 0
        left: int = self._handle.flush(timeout)
        self._dispatch_reports()
        return left

    def close(self, timeout: float = 30.0) -> int:
        """Flush (up to ``timeout``), stop the poll thread and drop the handle.

        Returns how many messages were left undelivered. A later send makes a new
        handle, so closing a producer that is still shared is safe, just wasteful.
        """
        if self._handle is None or self._pid != _pid:
            self._handle = None
            return 0
        left = self.flush(timeout)
        self._stop_polling.set()
        if self._poller is not None:
            self._poller.join()
        self._dispatch_reports()
        self._handle = self._poller = None
        return left

    def _on_delivery(self, future: asyncio.Future[RecordMetadata], error: Any,
                     message: Any) -> None:
        # librdkafka's callback, on the poll thread (or a flush() caller): queue only.
        self._reports.append((future, error, message))

    def _on_failed_delivery(self, future: asyncio.Future[Any], error: Any,
                            message: Any) -> None:
        # As _on_delivery, for send_unconfirmed: a success wakes no loop.
        if error is not None:
            self._reports.append((future, error, message))

    def _poll_until_stopped(self, handle: Producer, stop: threading.Event) -> None:
        """Serve delivery reports until stopped. A fatal error (a transactional producer
        fenced by its successor) is raised by ``poll`` once: it is logged and polling
        goes on, so the failed deliveries still reach their futures; a dead poll thread
        would leave every later send waiting forever."""
        while not stop.is_set():
            try:
                handle.poll(0.2)
            except KafkaException as exc:
                log.error("producer: %s", exc)
                stop.wait(0.1)
            if self._reports or self._batches.completed:
                self._dispatch_reports()

    def _dispatch_reports(self) -> None:
        """Hand queued reports to the loops that own their futures."""
        batch: list[_Report] = []
        reports = self._reports
        while reports:
            try:
                batch.append(reports.popleft())
            except IndexError:  # another thread emptied it meanwhile
                break
        settle_on_owning_loops(batch, _resolve)
        self._batches.dispatch()


_Item = TypeVar("_Item", bound=tuple[Any, ...])


def settle_on_owning_loops(items: Sequence[_Item],
                           settle: Callable[[list[_Item]], None]) -> None:
    """From any thread: run ``settle(group)`` on each loop owning futures in ``items``.

    ``items`` are tuples whose first element is a future. One ``call_soon_threadsafe``
    per loop per call, so a batch of results costs one wake-up, not one per message.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
    for item in items:
        by_loop.setdefault(item[0].get_loop(), []).append(item)
    for loop, group in by_loop.items():
        # A closed loop raises RuntimeError: nobody is waiting there any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, group)


def _resolve(batch: list[_Report]) -> None:
    """On the owning loop: settle each future (skipping ones the caller cancelled)."""
    for future, error, message in batch:
        if future.done():
            continue
        if error is not None:
            future.set_exception(KafkaException(error))
        else:
            _, timestamp = message.timestamp()
            future.set_result(RecordMetadata(message.topic(), message.partition(),
                                             message.offset(), timestamp or None))


def _plain_headers(headers: Headers | None) -> list[tuple[str, bytes | str | None]] | None:
    if not headers:
        return None
    return list(headers.items() if isinstance(headers, Mapping) else headers)


def _log_client_error(error: KafkaError) -> None:
    """Client-wide errors: librdkafka retries, deliveries fail on their own timeout.

    Connection churn (one broker gone, a refused connect) is logged at debug, since
    librdkafka itself already reports each attempt; losing every broker and fatal
    errors are warnings.
    """
    serious = error.fatal() or error.code() == KafkaError._ALL_BROKERS_DOWN
    log.log(logging.WARNING if serious else logging.DEBUG, "kafka producer: %s", error)

