"""Delivery reports counted per batch: no future, no callback object per message.

Why: a sink's output and a table's changelog write each need their delivery report
before their record may be acked (the invariant), but nobody needs *each* report as
it comes. A future per message (``KafkaProducer.send_soon``) cost the worker's loop
about 8 us per output in bench/sink_inproc.py: the future, the ``partial`` handed to
librdkafka, a loop callback per report to resolve it, and one more per done-callback.
Here the messages a loop turn sends for one *settle* callback share one
:class:`DeliveryBatch`, which librdkafka calls for each report (it is the
``on_delivery`` of all of them); when every message of the batch is reported, the
owning loop gets one call, ``settle(batch)``, with the tokens (whatever the sender
attached: the seam's tickets) of the delivered messages and of the failed ones.

Counting without a lock, across the loop thread (which sends and then *seals* the
batch on its next turn) and whichever thread serves reports (the producer's poll
thread, or a ``flush()`` caller): the seal and every report are *events*, and each
takes a number from one ``itertools.count`` (one C call: atomic under the GIL). A
batch of ``n`` messages has ``n + 1`` events, and the one that draws ``n + 1`` is the
last of them: exactly one thread completes the batch. The seal stores ``total``
before it draws, so a report that draws ``n + 1`` (the seal drew earlier) sees it.
A failure is appended to ``failures`` before its report draws, so the completing
thread sees every failure.

A table flush needs less: whether *all* of a shard's rows were delivered, and where
the last one landed. :func:`send_rows` queues them with one :class:`RowsReport`,
counted the same way, with no entry per message to match failures against.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException

__all__ = ["Batches", "DeliveryBatch", "RowsReport", "Settle", "send_rows"]

log = logging.getLogger("agentlib.kafka")

#: Called on the owning loop once every message of a batch was reported.
Settle = Callable[["DeliveryBatch"], None]


class DeliveryBatch:
    """The messages one loop turn sent for one ``settle``, and their reports.

    The loop thread appends with :meth:`sent` and calls :meth:`seal` once; report
    threads call the batch itself (it is librdkafka's ``on_delivery``). ``on_complete``
    runs in the report thread that completes it (see the module docstring), unless
    :meth:`seal` does.
    """

    __slots__ = ("_events", "entries", "failures", "last", "loop", "on_complete", "settle",
                 "total", "track_offsets")

    def __init__(self, loop: asyncio.AbstractEventLoop, settle: Settle,
                 on_complete: Callable[[DeliveryBatch], None], *,
                 track_offsets: bool = False) -> None:
        self.loop = loop
        self.settle = settle
        self.on_complete = on_complete
        #: (token, topic, key, value) per message sent, in order (loop thread only)
        self.entries: list[tuple[Any, str, bytes | None, bytes | None]] = []
        #: (librdkafka error, message) of each failed report (report threads)
        self.failures: list[tuple[Any, Any]] = []
        #: partition → the highest offset delivered there (with ``track_offsets``)
        self.last: dict[int, int] = {}
        self.track_offsets = track_offsets
        self.total = -1  # events (messages + the seal), known once sealed
        self._events = itertools.count(1)

    def sent(self, token: Any, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Note one message handed to librdkafka with this batch as its ``on_delivery``."""
        self.entries.append((token, topic, key, value))

    def seal(self) -> bool:
        """No more messages join this batch (the loop thread, once). True: every
        message was reported already, so the caller settles it (``on_complete`` is
        not called)."""
        self.total = len(self.entries) + 1
        return next(self._events) == self.total

    def __call__(self, error: Any, message: Any) -> None:
        """librdkafka's delivery report for one message of this batch."""
        if error is not None:
            self.failures.append((error, message))
        elif self.track_offsets:
            partition, offset = message.partition(), message.offset()
            if offset > self.last.get(partition, -1):
                self.last[partition] = offset
        if next(self._events) == self.total:
            self.on_complete(self)

    # -- on the owning loop, once complete ------------------------------------------

    def outcome(self) -> tuple[list[Any], list[tuple[Any, BaseException]]]:
        """(tokens delivered, (token, error) of each failed message), in send order.

        A report names its message by topic, key and value only, so a failure is
        matched to the first unmatched message with those: identical messages are
        interchangeable here. A failure that matches none (it cannot, short of a
        client bug) fails every message of the batch: a report must never be lost.
        """
        entries = self.entries
        if not self.failures:
            return [entry[0] for entry in entries], []
        # Where each (topic, key, value) was sent, in order (linear, however many fail).
        unmatched: dict[tuple[Any, ...], collections.deque[int]] = {}
        for index, entry in enumerate(entries):
            unmatched.setdefault(entry[1:], collections.deque()).append(index)
        failed_at: dict[int, BaseException] = {}
        for error, message in self.failures:
            places = unmatched.get((message.topic(), message.key(), message.value()))
            if places:
                failed_at[places.popleft()] = KafkaException(error)
            else:
                for index in range(len(entries)):
                    failed_at.setdefault(index, KafkaException(error))
        delivered = [entry[0] for index, entry in enumerate(entries)
                     if index not in failed_at]
        return delivered, [(entries[index][0], error) for index, error in
                           sorted(failed_at.items())]

    def offsets(self) -> dict[int, int]:
        """partition → the highest offset delivered there (with ``track_offsets``)."""
        return self.last


class RowsReport:
    """The reports of messages sent to one partition as one unit (a table flush's rows
    of one shard, :func:`send_rows`): counted as a :class:`DeliveryBatch`'s are, but
    with one ``token`` for all of them and no entry per message, since whoever sent
    them only needs to know that all were delivered (or the first error) and the
    highest offset they got. ``settle(report)`` runs once, on the owning loop."""

    __slots__ = ("_events", "error", "last", "loop", "on_complete", "partition", "sent",
                 "settle", "token", "total")

    def __init__(self, loop: asyncio.AbstractEventLoop, settle: Callable[[Any], None],
                 on_complete: Callable[[Any], None], token: Any, partition: int) -> None:
        self.loop = loop
        self.settle = settle
        self.on_complete = on_complete
        self.token = token
        self.partition = partition
        self.sent = 0
        self.error: BaseException | None = None  # the first failure (report threads)
        self.last = -1  # the highest offset delivered
        self.total = -1  # events (messages + the seal), known once sealed
        self._events = itertools.count(1)

    def seal(self, sent: int) -> bool:
        """``sent`` messages were queued with this report; True: all were reported
        already (the caller settles it)."""
        self.sent = sent
        self.total = sent + 1
        return next(self._events) == self.total

    def __call__(self, error: Any, message: Any) -> None:
        """librdkafka's delivery report for one message of this unit."""
        if error is not None:
            if self.error is None:
                self.error = KafkaException(error)
        else:
            offset = message.offset()
            if offset > self.last:
                self.last = offset
        if next(self._events) == self.total:
            self.on_complete(self)


def send_rows(handle: Any, batches: Batches, topic: str, partition: int,
              rows: Iterable[tuple[bytes, bytes | None]], headers: list[tuple[str, bytes]],
              last: tuple[bytes, bytes | None, list[tuple[str, bytes]]],
              settle: Callable[[RowsReport], None], token: Any,
              ) -> list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]]:
    """Queue ``rows`` (each with ``headers``), then ``last`` (key, value, headers),
    to ``topic[partition]`` on the librdkafka ``handle``, reported as one
    :class:`RowsReport`. Returns the messages the full local queue refused (the
    caller sends them another way, after these); normally none."""
    report = RowsReport(asyncio.get_running_loop(), settle, batches.completed.append,
                        token, partition)
    produce = handle.produce
    sent = 0
    unsent: list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]] = []
    rest = iter(rows)
    key: bytes = b""
    value: bytes | None = None
    try:
        for key, value in rest:
            produce(topic, value, key, partition=partition, headers=headers,
                    on_delivery=report)
            sent += 1
    except BufferError:
        unsent = [(key, value, headers), *((k, v, headers) for k, v in rest), last]
    if not unsent:
        try:
            produce(topic, last[1], last[0], partition=partition, headers=last[2],
                    on_delivery=report)
            sent += 1
        except BufferError:
            unsent = [last]
    if report.seal(sent):  # every report came already: settle on the next turn
        done: list[DeliveryBatch | RowsReport] = [report]
        report.loop.call_soon(settle_batches, done)
    return unsent


class Batches:
    """One producer's batches: the open one per settle callback, and the completed
    ones waiting to be handed to their loops (:meth:`dispatch`, from any thread)."""

    def __init__(self) -> None:
        #: per settle callback, the batch this loop turn sends into
        self.open: dict[Settle, DeliveryBatch] = {}
        #: batches whose last report came (report threads append)
        self.completed: collections.deque[DeliveryBatch | RowsReport] = \
            collections.deque()

    def start(self, settle: Settle, track_offsets: bool) -> DeliveryBatch:
        """A new batch for ``settle``, sealed on the running loop's next turn."""
        loop = asyncio.get_running_loop()
        batch = self.open[settle] = DeliveryBatch(loop, settle, self.completed.append,
                                                  track_offsets=track_offsets)
        loop.call_soon(self._seal, batch)
        return batch

    def _seal(self, batch: DeliveryBatch) -> None:
        """The loop turn that opened ``batch`` is over: later sends start another."""
        if self.open.get(batch.settle) is batch:
            del self.open[batch.settle]
        if batch.seal():  # every message was reported already: settle it here
            settle_batches([batch])

    def dispatch(self) -> None:
        """Hand the completed batches to their loops: one wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[DeliveryBatch | RowsReport]] = {}
        queue = self.completed
        while queue:
            try:
                batch = queue.popleft()
            except IndexError:  # another thread emptied it meanwhile
                break
            by_loop.setdefault(batch.loop, []).append(batch)
        for loop, group in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                loop.call_soon_threadsafe(settle_batches, group)


def settle_batches(batches: list[DeliveryBatch | RowsReport]) -> None:
    """On the owning loop: hand each completed batch to its ``settle``."""
    for batch in batches:
        try:
            settle: Callable[[Any], None] = batch.settle
            settle(batch)
        except Exception:  # one callback's bug must not lose the others' reports
            log.exception("a delivery batch's settle callback failed")
