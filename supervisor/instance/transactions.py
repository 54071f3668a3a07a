"""Exactly once, the instance's side: its outputs and its partitions' offsets in one
Kafka transaction per commit interval.

Under ``processing_guarantee = "exactly_once"`` each instance's producer (the app's,
which every sink, ``send``/``cast``, ``ask`` reply, dead letter and table changelog
write goes through) is transactional. Every ``commit_interval`` the instance:

1. *quiesces*: feeds the agent nothing new until every record it was fed is done, so
   the transaction holds the outputs of exactly the records whose offsets it commits
   (an output of a half-processed record would otherwise commit with no offset, and be
   produced again after a crash);
2. sends its partitions' next offsets with the supervisor's consumer group metadata
   (``GROUP`` records: member id and generation, so a zombie of an old generation is
   fenced, KIP-447) and commits the transaction;
3. only then ACKs those records to the supervisor, which under exactly once never
   commits offsets itself.

An instance that *runs dry* (its inbound ring empty, every record it was fed done)
commits at once instead of at the interval's end (nothing to quiesce then), at most
every ``commit_interval / 10``, within 0.1 s to 1 s: the at-least-once committer's
rule for a caught-up partition (``supervisor/daemon/commit.py``). A
drained backlog's outputs become visible when they are done rather than up to an
interval later, and a crash's re-dispatch windows (1, 2, 4, ... records, each waiting
for the previous one's ACKs, ``supervisor/daemon/instances.py``) no longer wait an
interval each.

A call that fails with a *retriable* error (librdkafka: "retry call to resume"; e.g.
the group coordinator still loading after a broker restart, which answers
``TxnOffsetCommit`` with ``NOT_COORDINATOR`` until it is ready) is made again, the same
operation resumed, until the transaction timeout has passed since the first try. Any
other transaction error, or a retriable one past that, aborts and ends the instance
(exit 3): the supervisor restarts it and re-dispatches every record it had not ACKed,
and the successor's producer (same ``transactional.id``) fences the old one and aborts
whatever it left open. Why resume rather than end at once: each ending is a fence, an
abort and a successor's ``init_transactions`` against a broker that is just coming
back; fault row 24 (broker down 20 s) showed instances ending on a loading coordinator
and, once in CI, the group's committed offsets unreadable afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any, NoReturn

from confluent_kafka import KafkaError

from supervisor.transport import wire

__all__ = ["EXIT_TRANSACTION_FAILED", "Transactions"]

log = logging.getLogger("agentd.worker")

EXIT_TRANSACTION_FAILED = 3
TRANSACTION_TIMEOUT_S = 10.0  # for one librdkafka transactional call
TRANSACTION_TIMEOUT_MIN_S = 15.0  # the broker aborts an open transaction after this
RESUME_PAUSE_S = 0.1  # between two tries of a call that failed with a retriable error
#: The transactional producer's batching delay (librdkafka's default). agentlib's
#: producers use 0 so an ``ask`` is not held back; under exactly once every output
#: waits for its transaction's commit (up to ``commit_interval``) before a
#: ``read_committed`` reader sees it, so 5 ms of batching is not visible, and it made
#: the produce requests (one per record at 0) few: bench/eos.py 20,000 -> 32,000 msg/s.
LINGER_MS = 5
#: The transactional producer's local queue, in messages. A topic sink's output under
#: exactly once holds its record only until it is queued (``agentlib/sinks.py``: the
#: commit is its delivery report), so this, not the agent's ``max_in_flight``, bounds
#: how far an instance runs ahead of the broker, and so what a commit must flush
#: within :data:`TRANSACTION_TIMEOUT_S`; a full queue makes outputs wait for room.
QUEUE_MESSAGES = 100_000
#: The least time between two commits of an instance that runs dry (see the module
#: docstring): with ``commit_interval / 10`` this caps them at ten a second...
PROMPT_MIN_GAP_S = 0.1
#: ...and this keeps them prompt under a long interval (600 s would wait 60 s).
PROMPT_MAX_GAP_S = 1.0


class Transactions:
    """One instance's transaction: what it holds back, and the commit cycle."""

    def __init__(self, producer: Any, interval: float, group_id: str | None = None,
                 resume_for: float = TRANSACTION_TIMEOUT_MIN_S) -> None:
        self.producer = producer
        self.interval = interval
        #: how long a call failing with retriable errors is resumed (the module docstring)
        self.resume_for = resume_for
        #: the least time from one commit to an early one when the instance runs dry
        self.prompt_gap = min(max(interval / 10, PROMPT_MIN_GAP_S), PROMPT_MAX_GAP_S)
        self.group_id = group_id
        #: (topic index, partition) -> the group's committed offset, while records
        #: below it may still arrive (see :meth:`committed_below`)
        self.skip_below: dict[tuple[int, int], int] = {}
        self._offsets_reader: Any = None
        self.group_metadata: bytes | None = None
        self.quiescing = False
        #: the instance found its inbound ring empty (set by the worker's ``pump``)
        self.dry = False
        #: the worker's timer for an early commit (:meth:`commit_wait` > 0), if set
        self.dry_timer: Any = None
        self.acks: list[bytes] = []
        #: (topic name, partition) → the next offset to commit (last ACKed + 1)
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.commits = 0
        self.held_records = 0
        self.opened_at = time.monotonic()
        self.started = False
        #: Seconds spent, over the instance's life, waiting for the agent to finish what
        #: it held (due to commit) and in the blocking commit calls: what exactly once
        #: costs the instance's loop (logged at exit, and what ``bench/eos.py`` explains).
        self.quiesce_s = 0.0
        self.commit_s = 0.0
        self._due_at = 0.0
        self._handle: Any = None

    @classmethod
    def install(cls, agent: Any, settings: dict[str, Any]) -> Transactions | None:
        """Give the app a transactional producer (None: not under exactly once)."""
        if not settings.get("exactly_once"):
            return None
        kafka = importlib.import_module("agentlib.kafka")
        app = agent.app
        interval = float(settings.get("commit_interval", 1.0))
        # A host that dies and does not come back holds its partitions' last stable
        # offset (read_committed readers wait) until its open transactions time out:
        # short, but well above a commit interval.
        timeout_ms = int(max(TRANSACTION_TIMEOUT_MIN_S, 10 * interval) * 1000)
        app._producer = kafka.KafkaProducer(app.conf.broker, config={
            "transactional.id": settings["transactional_id"],
            "transaction.timeout.ms": timeout_ms, "linger.ms": LINGER_MS,
            "queue.buffering.max.messages": QUEUE_MESSAGES})
        return cls(app._producer, interval, settings.get("group_id"), timeout_ms / 1000)

    def start(self) -> None:
        """Fence any predecessor (aborting its open transaction), open the first one.

        A reload's or recycle's successor calls this only once it reads its first
        records, when its predecessor has committed its last transaction and retired:
        started while warming up beside it, it would fence the predecessor mid-drain.
        """
        self.started = True
        self._handle = self.producer._ensure()
        self._call(self._handle.init_transactions, TRANSACTION_TIMEOUT_S * 3)
        self._call(self._handle.begin_transaction)

    def note_partition(self, tp: tuple[int, int], topic: str) -> None:
        """A partition's first record in this instance: look up the group's committed
        offset, once the transactions are started (``init_transactions`` has let a
        predecessor's last commit finish or aborted it).

        Why: a predecessor killed after ``commit_transaction`` returned but before its
        ACKs reached the supervisor committed those records, outputs included; the
        supervisor re-dispatches them (it saw no ACK). Processed again, their outputs
        would be in Kafka twice; :meth:`committed_below` lets them be acked unread."""
        if not self.group_id:
            return
        if self._offsets_reader is None:
            from confluent_kafka import Consumer

            from agentlib.kafka import client_settings
            self._offsets_reader = Consumer({
                "bootstrap.servers": self.producer.bootstrap, **client_settings(),
                "group.id": self.group_id, "enable.auto.commit": False,
                "isolation.level": "read_committed"})
        from confluent_kafka import TopicPartition
        (found,) = self._call(self._offsets_reader.committed,
                              [TopicPartition(topic, tp[1])], TRANSACTION_TIMEOUT_S)
        if found.offset > 0:
            self.skip_below[tp] = found.offset

    def committed_below(self, tp: tuple[int, int], offset: int) -> bool:
        """Whether this record's offset is already committed (called only while
        :attr:`skip_below` has entries: records arrive in offset order per partition,
        so the first one at or past the committed offset ends the check)."""
        below = self.skip_below.get(tp)
        if below is None:
            return False
        if offset < below:
            return True
        del self.skip_below[tp]
        return False

    # ------------------------------------------------------------------ what is held

    def on_group(self, record: memoryview) -> None:
        self.group_metadata = wire.decode_group(record)

    def hold_acks(self, outbox: list[bytes], topics: list[str]) -> None:
        """Move the ACKs out of ``outbox``: they go out once their offsets committed."""
        kept = []
        for record in outbox:
            if record[0] != wire.ACK:
                kept.append(record)
                continue
            ack = wire.decode_ack(record)
            tp = (topics[ack.topic_index], ack.partition)
            self.next_offsets[tp] = max(self.next_offsets.get(tp, 0), ack.last + 1)
            self.held_records += ack.last - ack.first + 1
            self.acks.append(record)
        outbox[:] = kept

    # ------------------------------------------------------------------ the cycle

    def due(self) -> None:
        """The interval passed: stop feeding until the agent is done with its records."""
        if not self.quiescing:
            self.quiescing = True
            self._due_at = time.monotonic()

    def commit_wait(self, agent_idle: bool, now: float) -> float | None:
        """Whether to :meth:`commit` now (0), in so many seconds (an early commit once
        the least gap passed: ask again then) or not (None). ``agent_idle``: the agent
        holds no record. Due at the interval once idle; early if :attr:`dry` too."""
        if not agent_idle:
            return None
        if self.quiescing:
            return 0.0
        if not self.dry or not self.acks:
            return None
        return max(0.0, self.opened_at + self.prompt_gap - now)

    def commit(self, outbox: list[bytes]) -> bool:
        """Commit outputs and offsets; the held ACKs join ``outbox``. False: nothing
        to commit yet (offsets held but no group metadata received)."""
        if not self.started or (self.next_offsets and self.group_metadata is None):
            return False
        from confluent_kafka import TopicPartition

        started = time.monotonic()
        if self.quiescing:
            self.quiesce_s += started - self._due_at
        handle = self._handle
        if self.next_offsets:
            offsets = [TopicPartition(t, p, o) for (t, p), o in self.next_offsets.items()]
            self._call(handle.send_offsets_to_transaction, offsets, self.group_metadata,
                       TRANSACTION_TIMEOUT_S)
        self._call(handle.commit_transaction, TRANSACTION_TIMEOUT_S)
        self._call(handle.begin_transaction)
        self.commit_s += time.monotonic() - started
        self.commits += 1
        self.held_records = 0
        self.opened_at = time.monotonic()
        outbox.extend(self.acks)
        self.acks.clear()
        self.next_offsets.clear()
        self.quiescing = False
        return True

    def report(self) -> bytes:
        """The ``TXN`` record for ``agentd status`` (sent with each PONG)."""
        return wire.encode_txn(wire.TxnReport(self.commits, self.held_records,
                                              time.monotonic() - self.opened_at))

    def close(self) -> None:
        """At exit: whatever was not committed is aborted (its records were not ACKed)."""
        if self._offsets_reader is not None:
            self._offsets_reader.close()
        if self._handle is None:
            return
        log.info("exactly once: %d transactions committed, %.3f s quiescing, %.3f s in the "
                 "commit calls", self.commits, self.quiesce_s, self.commit_s)
        try:
            self._handle.abort_transaction(TRANSACTION_TIMEOUT_S)
        except Exception as exc:  # exiting anyway: the successor's init aborts it too
            log.debug("abort at exit: %s", exc)

    def _call(self, fun: Callable[..., Any], *args: Any) -> Any:
        """``fun(*args)``, resumed on retriable errors (see the module docstring); any
        other failure ends the instance."""
        give_up_at = time.monotonic() + self.resume_for
        while True:
            try:
                return fun(*args)
            except Exception as exc:
                if not resumable(exc) or time.monotonic() >= give_up_at:
                    self._fail(exc)
                log.warning("transaction call %s: %s; resuming it", fun.__name__, exc)
                time.sleep(RESUME_PAUSE_S)

    def _fail(self, exc: Exception) -> NoReturn:
        log.error("transaction failed (%s): this instance stops; its records not yet "
                  "committed go to its successor", exc)
        with contextlib.suppress(Exception):  # fenced or fatal: nothing to undo
            self._handle.abort_transaction(TRANSACTION_TIMEOUT_S)
        logging.shutdown()
        os._exit(EXIT_TRANSACTION_FAILED)


def resumable(exc: Exception) -> bool:
    """A librdkafka error its transactional API says to call again for ("retry call to
    resume"); never one that needs an abort or is fatal (the producer is fenced)."""
    error = exc.args[0] if exc.args else None
    if not isinstance(error, KafkaError):
        return False
    return bool(error.retriable()) and not error.txn_requires_abort() and not error.fatal()
