"""The process's reply consumer: where ``ask``/``map``/``join`` answers come back.

Faust's request/reply protocol: the asker sends its request with a reply topic and a
correlation id; the agent produces, for each value it yields, a ``@ReqRepResponse``
record ``{"key": ..., "value": ..., "correlation_id": ..., "__faust": {"ns":
"@ReqRepResponse"}}`` to that topic. One :class:`ReplyConsumer` per process reads the
topic (``f-reply-<uuid4>``, one partition, created on first use) and resolves the
future registered for each correlation id.

Order of use, so that no reply can be missed: ``await replies.start()`` (idempotent:
creates the topic, assigns the consumer), then ``future = replies.expect(cid)``, then
send the request with ``replies.topic`` as its reply-to, then await the future.

Choices, and why:

* **No consumer group.** The consumer is *assigned* every partition of the topic; a
  group join would add a rebalance (seconds) to the first ask for nothing, since
  this process is the topic's only reader.
* **Where reading starts.** A topic this process just created (or that appeared by
  auto-creation on its first use) is read from the beginning, as Faust's
  ``auto_offset_reset="earliest"`` does, so a reply produced before the assignment
  took effect is still seen. A topic that already existed (a fixed ``reply_to``
  reused across runs) is read from its end as of ``start()``, which is before any
  request of this process was sent, so old replies are skipped and none is missed.
* **Topic creation.** ``AdminClient.create_topics`` with one partition and Faust's
  ``reply_expires`` retention (one day). librdkafka's mock cluster (agentd's embedded
  broker) has no controller (the call would time out), so it is recognised by its
  cluster id first and not asked; there, and wherever creation fails, the consumer
  asks for the topic's metadata with auto-creation allowed and reads however many
  partitions it got (every partition is assigned, so the count does not matter).
  Nor is the mock cluster asked to delete the topic (it would time out too), and its
  consumer polls it every 10 ms (``fetch.wait.max.ms``): the mock answers a Fetch
  only after the whole wait, even when a reply arrives meanwhile.
* **A consume thread, woken loops batched**, like :mod:`agentlib.kafka`'s poll
  thread: a blocking ``poll()`` with the GIL released costs nothing while idle and
  returns as soon as one reply is there; ``consume(n, 0)`` then takes whatever else
  already arrived, and each batch of replies wakes each waiting loop once. Not a
  blocking ``consume(n, timeout)``: librdkafka returns from that only when it has
  ``n`` messages *or the timeout passed*, so with a 200 ms timeout every ask waited
  for the end of the current 200 ms (measured: p50 201 ms, 5 asks/s sequentially).
* **Clean stop deletes the topic** when this process created it and no request was
  abandoned (Faust leaves one ``f-reply-*`` topic behind per process, forever, which
  piles up with every CLI ``ask``). A topic with abandoned requests is kept, so a
  late reply does not re-create it by auto-creation; its retention empties it. A
  fixed topic (``topic=``, the App's ``reply_to`` setting) is never deleted: other
  processes may read it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from agentlib import kafka

__all__ = ["REPLY_EXPIRES_MS", "REPLY_NAMESPACE", "ReplyConsumer", "ReplyConsumerStopped"]

log = logging.getLogger(__name__)

#: ``__faust.ns`` of a reply record.
REPLY_NAMESPACE = "@ReqRepResponse"
#: Retention of reply topics (Faust's ``reply_expires`` default: one day).
REPLY_EXPIRES_MS = 86_400_000
#: Faust's ``reply_to_prefix``.
REPLY_TOPIC_PREFIX = "f-reply-"

#: How long the consume thread blocks for a reply before it looks at its stop flag.
_POLL_TIMEOUT = 0.2
#: Most replies taken (without waiting) after the first, per wake-up of the loops.
_BATCH = 1000

_Resolution = tuple["asyncio.Future[Any]", Any, BaseException | None]


class ReplyConsumerStopped(RuntimeError):
    """The reply consumer stopped while this request was still waiting for its reply."""


class ReplyConsumer:
    """One reply topic and one consumer for all requests of this process.

    ``decode_value`` turns a reply's JSON ``value`` into what the asker gets (the
    App passes its Record registry's "dict with ``__faust.ns`` → model" function);
    by default the decoded JSON is returned as is.
    """

    def __init__(self, broker: str | Sequence[str] | None = None, *,
                 topic: str | None = None,
                 decode_value: Callable[[Any], Any] | None = None,
                 create_timeout: float = 5.0) -> None:
        self._broker = broker
        self._fixed_topic = topic
        self._decode_value = decode_value or _identity
        self._create_timeout = create_timeout
        self._exit_hook = False
        self._reset_for_this_process()

    def _reset_for_this_process(self) -> None:
        """Fresh state: the parent's consumer, thread and futures are not this process's."""
        self._pid = kafka._pid
        # Guards _waiting and start/stop. New after a fork: a copy could be held forever.
        self._lock = threading.Lock()
        self._topic = self._fixed_topic or f"{REPLY_TOPIC_PREFIX}{uuid.uuid4()}"
        self._waiting: dict[str, list[asyncio.Future[Any]]] = {}
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._created_topic = False
        self._abandoned = 0
        self._mock_cluster = False  # no CreateTopics/DeleteTopics there

    def _check_pid(self) -> None:
        if self._pid != kafka._pid:
            self._reset_for_this_process()

    @property
    def topic(self) -> str:
        """The reply topic name to put in requests' reply-to."""
        self._check_pid()
        return self._topic

    @property
    def started(self) -> bool:
        """Whether the topic exists and the consumer reads it (in this process)."""
        self._check_pid()
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        """Make sure the topic exists and is being read; cheap once started."""
        self._check_pid()
        if self._thread is None or not self._thread.is_alive():
            await asyncio.to_thread(self._start_blocking)

    def expect(self, correlation_id: str) -> asyncio.Future[Any]:
        """A future for the first reply carrying ``correlation_id``.

        Register before sending the request. Cancelling the future (a timeout)
        forgets it; a reply arriving later is dropped.
        """
        self._check_pid()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting.setdefault(correlation_id, []).append(future)
        future.add_done_callback(functools.partial(self._forget, correlation_id))
        return future

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop reading; fail requests still waiting; delete the topic if that is safe."""
        await asyncio.to_thread(self.close, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Blocking :meth:`stop`, for ``atexit`` or code without an event loop."""
        self._check_pid()
        with self._lock:
            thread, consumer = self._thread, self._consumer
            self._thread = self._consumer = None
            waiting, self._waiting = self._waiting, {}
        if thread is not None:
            self._stop_event.set()
            thread.join(timeout)
        if consumer is not None:
            consumer.close()
        stopped = ReplyConsumerStopped(f"reply consumer of {self._topic} stopped")
        leftovers: list[_Resolution] = [(future, None, stopped)
                                        for futures in waiting.values() for future in futures]
        self._abandoned += len(leftovers)
        kafka.settle_on_owning_loops(leftovers, _settle)
        # A fixed topic (Faust's ``reply_to`` setting) may be shared: kept, as Faust does.
        if self._created_topic and self._fixed_topic is None and not self._abandoned \
                and not self._mock_cluster:
            self._delete_topic(timeout)
            self._topic = f"{REPLY_TOPIC_PREFIX}{uuid.uuid4()}"  # no race with the deletion
        self._created_topic = False
        self._stop_event = threading.Event()

    # -- start -----------------------------------------------------------------

    def _start_blocking(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._consumer is not None:   # its thread died of a fatal error: replace it
                with contextlib.suppress(Exception):
                    self._consumer.close()
            bootstrap = kafka.bootstrap_servers(self._broker)
            created, by_admin = self._create_topic(bootstrap)
            partitions = self._wait_for_partitions(bootstrap, auto_create=not by_admin)
            # This consumer never auto-creates: its metadata refreshes could otherwise
            # bring the topic back after close() deleted it.
            consumer = Consumer({
                **kafka.client_settings(),
                "bootstrap.servers": bootstrap,
                "group.id": self._topic,          # required by the client; never joined
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "auto.offset.reset": "earliest",
                "error_cb": _log_client_error,
                **(kafka.MOCK_CONSUMER_TUNING if self._mock_cluster else {}),
            })
            try:
                if created:
                    # From the beginning: a reply written before the first fetch of a
                    # topic made just now must be found.
                    starts = dict.fromkeys(partitions, OFFSET_BEGINNING)
                else:
                    starts = {p: consumer.get_watermark_offsets(
                        TopicPartition(self._topic, p), self._create_timeout)[1]
                        for p in partitions}
                consumer.assign([TopicPartition(self._topic, p, offset)
                                 for p, offset in starts.items()])
            except BaseException:
                consumer.close()
                raise
            self._consumer = consumer
            self._created_topic = created
            self._thread = threading.Thread(
                target=self._consume_until_stopped, args=(consumer, self._stop_event),
                name="agentlib-replies", daemon=True)
            self._thread.start()
            if not self._exit_hook:
                # Scripts rarely stop what they did not start: clean up at exit.
                atexit.register(self.close, 5.0)
                self._exit_hook = True

    def _create_topic(self, bootstrap: str) -> tuple[bool, bool]:
        """Create the topic: (is it new, i.e. ours; did create_topics make or find it)."""
        admin = AdminClient({**kafka.client_settings(), "bootstrap.servers": bootstrap})
        try:
            cluster_id = admin.list_topics(timeout=self._create_timeout).cluster_id
        except KafkaException:
            cluster_id = None  # create_topics below says why
        self._mock_cluster = kafka.note_cluster(bootstrap, cluster_id)
        if self._mock_cluster:
            return True, False
        spec = NewTopic(self._topic, num_partitions=1, replication_factor=-1,
                        config={"cleanup.policy": "delete",
                                "retention.ms": str(REPLY_EXPIRES_MS)})
        future = admin.create_topics([spec], request_timeout=self._create_timeout,
                                     operation_timeout=self._create_timeout)[self._topic]
        try:
            future.result(self._create_timeout + 5.0)
        except TimeoutError as exc:
            log.info("create_topics(%s) timed out (%s); relying on auto-creation",
                     self._topic, exc)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                # A fresh uuid name can only have been auto-created by a racing reply.
                return self._fixed_topic is None, True
            log.info("create_topics(%s) failed (%s); relying on auto-creation",
                     self._topic, exc)
        else:
            return True, True
        return True, False

    def _wait_for_partitions(self, bootstrap: str, *, auto_create: bool) -> list[int]:
        """The topic's partitions, asking (with auto-creation if told) until it has some."""
        probe = Consumer({**kafka.client_settings(), "bootstrap.servers": bootstrap,
                          "group.id": self._topic,
                          "allow.auto.create.topics": auto_create,
                          "error_cb": _log_client_error})
        try:
            deadline = time.monotonic() + self._create_timeout + 10.0
            last_error: Any = None
            while time.monotonic() < deadline:
                meta = probe.list_topics(self._topic, timeout=self._create_timeout)
                topic_meta = meta.topics.get(self._topic)
                if (topic_meta is not None and topic_meta.error is None
                        and topic_meta.partitions):
                    return sorted(topic_meta.partitions)
                last_error = topic_meta.error if topic_meta is not None else "not listed"
                self._stop_event.wait(0.2)
        finally:
            probe.close()
        raise KafkaException(f"reply topic {self._topic} could not be created: neither "
                             f"create_topics nor auto-creation made it ({last_error})")

    def _delete_topic(self, timeout: float) -> None:
        admin = AdminClient({**kafka.client_settings(),
                             "bootstrap.servers": kafka.bootstrap_servers(self._broker)})
        future = admin.delete_topics([self._topic], request_timeout=min(timeout, 3.0),
                                     operation_timeout=min(timeout, 3.0))[self._topic]
        try:
            future.result(timeout + 5.0)
        except (KafkaException, TimeoutError) as exc:  # the mock cluster cannot delete
            log.info("could not delete reply topic %s: %s", self._topic, exc)

    # -- consume ---------------------------------------------------------------

    def _consume_until_stopped(self, consumer: Consumer, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                first = consumer.poll(_POLL_TIMEOUT)   # returns on the first reply
                messages = [] if first is None else [first, *consumer.consume(_BATCH, 0)]
            except (KafkaException, RuntimeError) as exc:  # closed under us, or fatal
                if not stop.is_set():
                    log.error("reply consumer of %s failed: %s", self._topic, exc)
                return
            resolutions: list[_Resolution] = []
            for message in messages:
                if message.error() is not None:
                    log.warning("reply consumer of %s: %s", self._topic, message.error())
                    continue
                resolutions.extend(self._match(message.value()))
            kafka.settle_on_owning_loops(resolutions, _settle)

    def _match(self, payload: bytes | None) -> list[_Resolution]:
        """Futures this reply settles, with the decoded value or the decode error."""
        try:
            reply = json.loads(payload or b"null")
            correlation_id = reply["correlation_id"]
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("reply topic %s: not a @ReqRepResponse (%s): %.200r",
                        self._topic, exc, payload)
            return []
        with self._lock:
            futures = self._waiting.pop(correlation_id, None)
        if not futures:
            return []   # nobody waits (any more): a late or foreign reply
        try:
            value, error = self._decode_value(reply.get("value")), None
        except Exception as exc:
            value, error = None, exc
        return [(future, value, error) for future in futures]

    def _forget(self, correlation_id: str, future: asyncio.Future[Any]) -> None:
        """Done-callback: unregister a future that finished without a reply."""
        with self._lock:
            futures = self._waiting.get(correlation_id)
            if futures is not None and future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[correlation_id]
                if future.cancelled():
                    self._abandoned += 1


def _settle(batch: list[_Resolution]) -> None:
    for future, value, error in batch:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def _identity(value: Any) -> Any:
    return value


def _log_client_error(error: KafkaError) -> None:
    """As :func:`agentlib.kafka._log_client_error`: warnings only for what matters."""
    serious = error.fatal() or error.code() == KafkaError._ALL_BROKERS_DOWN
    log.log(logging.WARNING if serious else logging.DEBUG, "kafka reply consumer: %s", error)
