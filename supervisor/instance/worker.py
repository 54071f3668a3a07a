"""One agent instance: read records from the inbound ring, feed the agent, ack back.

Runs in a process forked from the zygote (:func:`run` is its whole life). Its loop is
uvloop; the inbound ring's data-ready eventfd is registered with ``add_reader`` and
the ring is read in batches until it is empty *and* the sleep announcement confirms it
(``prepare_read_sleep``), so a busy ring costs no system call per message.

What happens to one record: decode (:mod:`supervisor.transport.wire`) → ``AgentHost.feed`` →
the agent processes it and its sinks complete → ``on_done`` → the record's offset is
marked done → once per loop iteration the done *prefix* of each partition's fed offsets
becomes one ``ACK`` range on the outbound ring. Acking only the prefix keeps a range's
meaning simple ("every record of this partition I was fed up to here is done"); an
agent finishes its events in order, so little ever waits behind the prefix.

Agent exceptions (and undecodable values) reach :meth:`Worker.on_error`, which applies
the agent's ``on_error`` policy; see ``docs/decisions.md`` for ``retry`` exhaustion.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from supervisor.config.loader import DEFAULT_MAX_IN_FLIGHT
from supervisor.gctune import tune_gc
from supervisor.instance.apptasks import Background
from supervisor.instance.channels import ChannelPort, inherited_flags
from supervisor.instance.deadletter import DeadLetters
from supervisor.instance.deadletter import one_line as _one_line
from supervisor.instance.tables import InstanceTables
from supervisor.instance.transactions import Transactions
from supervisor.transport import wire
from supervisor.transport.ring import Ring

__all__ = ["Worker", "run", "tune_gc"]

log = logging.getLogger("agentd.worker")

#: Records read from the ring per batch.
READ_BATCH = 512
EXIT_CRASH_POLICY = 3
EXIT_AGENT_STOPPED = 4
_RECORD = wire.RECORD


def run(agent: Any, fds: Sequence[int], settings: dict[str, Any]) -> int:
    """The instance process's main: returns its exit code (the caller ``os._exit``s)."""
    import uvloop

    tune_gc()
    # Instances share the supervisor's stdout/stderr: one write per line keeps their
    # lines whole, and an agent's print() shows at once, not when a block fills.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True, write_through=False)
    worker = Worker(agent, fds, settings)
    return uvloop.run(worker.main())


class Worker:
    """Ring ↔ agentlib seam glue for one instance (single-threaded, one event loop)."""

    def __init__(self, agent: Any, fds: Sequence[int], settings: dict[str, Any]) -> None:
        n_in = int(settings["ring_fds"][0])
        self.inbound = Ring.attach(list(fds[:n_in]))
        self.outbound = Ring.attach(list(fds[n_in:]))
        self.agent = agent
        self.settings = settings
        self.name: str = settings["agent"]
        self.topics: list[str] = list(settings["topics"])
        self.topic_index = {name: i for i, name in enumerate(self.topics)}
        #: records fed to the agent and not yet done, at most (the agent's
        #: ``max_in_flight``: bounds the instance's memory and what a crash redelivers)
        self.max_in_flight = int(settings.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT))
        seam = importlib.import_module("agentlib.seam")
        self._raw_record = seam.new_raw_record
        self._verdict = seam.ErrorVerdict
        self.host = seam.AgentHost(
            agent, on_done=self.on_done, on_error=self.on_error,
            concurrency_index=int(settings.get("concurrency_index", 0)))
        self.tables = InstanceTables.install(agent, str(settings.get("table_dir", "tables")),
                                             self._send,
                                             exactly_once=bool(settings.get("exactly_once")),
                                             max_in_flight=self.max_in_flight)
        # Per (topic index, partition): offsets fed, in order, and those done.
        self._fed: dict[tuple[int, int], collections.deque[int]] = {}
        self._done: dict[tuple[int, int], set[int]] = {}
        # The same sets by (topic name, partition), as on_done looks them up (the
        # topic table is consulted once per partition, again after a TOPICS update).
        self._done_by_name: dict[tuple[str, int], set[int]] = {}
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self._throttled = False
        self._stopping = False
        self.processed = 0
        self.dead_letters = DeadLetters(self.name, settings.get("dead_letter_topic"))
        self._background = Background()
        self.txn = Transactions.install(agent, settings)
        self._exit: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        flag_index = settings.get("channel_flags") or {}
        self.channels = ChannelPort(agent.app, self.host, self._send, flag_index,
                                    inherited_flags() if flag_index else None)

    async def main(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._exit = self._loop.create_future()
        # SIGINT (a terminal's Ctrl-C reaches the whole group) is the supervisor's to
        # handle; SIGTERM means "finish what you hold, then exit", like STOP.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._loop.add_signal_handler(signal.SIGTERM, self._finish, 0)
        await self.host.start()
        if self.host.task is not None:
            self.host.task.add_done_callback(self._on_agent_ended)
        if self.settings.get("warm_first"):  # a handover's successor: see handover.py
            await self.warm_producer()
        else:
            self._background.spawn(self.warm_producer(), "warm-producer")
        if self.txn is not None:
            if not self.settings.get("warm_first"):  # a successor starts on its records
                self.txn.start()
            self._loop.call_later(self.txn.interval, self._transaction_due)
        if self.settings.get("run_app_tasks"):
            self._background.start_app_tasks(self.agent.app, bool(self.settings.get("leader")))
        self._loop.add_reader(self.inbound.reader_fd, self._on_doorbell)
        self.pump()
        code = await self._exit
        self._loop.remove_reader(self.inbound.reader_fd)
        self._background.cancel_all()
        await self._background.stop_services()
        if code == 0:
            await self.host.stop(float(self.settings.get("shutdown_timeout", 30.0)))
            self.flush_acks()
            if self.txn is not None and not self.txn.commit(self._outbox):
                log.warning("exiting with records whose offsets could not be committed "
                            "(no group metadata yet): they go to the successor")
            self._outbox.append(wire.RETIRED_RECORD)
        await self._drain_outbox()  # acks and reports written before we go
        if self.tables is not None:
            self.tables.close()
        if self.txn is not None:
            self.txn.close()
        self.dead_letters.close(5.0)
        return code

    async def warm_producer(self) -> None:
        """Connect the app's producer before the first record needs it.

        Connecting and fetching metadata takes ~60-100 ms; lazily, that lands on the
        first output. After a reload or recycle that is the processing gap: the
        supervisor forks the successor while its predecessor drains, so warming now
        overlaps the drain. Agents without sinks or tables never make a producer here
        (tables have their own changelog producer: supervisor/instance/tables.py).
        """
        producers = []
        if getattr(self.agent, "sinks", None):
            producers.append(self.agent.app.producer)
        if self.tables is not None and self.tables.producer is not None:
            producers.append(self.tables.producer)
        for producer in producers:
            try:
                handle = producer._ensure()
                await asyncio.to_thread(handle.list_topics, None, 5.0)
            except Exception as exc:  # the first send connects (and reports) anyway
                log.debug("agent %s: producer warm-up failed: %s", self.name, exc)

    # ------------------------------------------------------------------ inbound

    def _on_doorbell(self) -> None:
        self.inbound.ack_doorbell()
        self.pump()

    def pump(self) -> None:
        """Read and feed until the ring is empty or the in-flight bound is reached."""
        ring, host = self.inbound, self.host
        while not self._stopping:
            if self.txn is not None and self.txn.quiescing:
                return  # committing: the agent finishes what it holds first
            room = self.max_in_flight - host.in_flight
            if room <= 0:
                self._throttled = True     # on_done resumes us
                if self.tables is not None:
                    # No record can join the table writes' flush window now: flush it
                    # rather than let its records wait for the window's timer.
                    self.tables.flush()
                return
            views = ring.read_many(min(READ_BATCH, room))
            if self.txn is not None and not self.txn.started \
                    and any(view[0] == _RECORD for view in views):
                self.txn.start()  # a successor's first records: its predecessor is gone
            if self.txn is not None:  # ran dry: maybe commit early (transactions.py)
                self.txn.dry = not views
            if not views:
                if ring.prepare_read_sleep():
                    if self.txn is not None:
                        self._schedule_flush()
                    return                 # the doorbell will call us
                continue
            batch: list[Any] = []
            append = batch.append
            # The per-record step, inlined (it runs for every message): decode the
            # RECORD, note its offset as fed, make the host's RawRecord.
            fields, make, fed_of = wire.record_fields, self._raw_record, self._fed
            topics, txn = self.topics, self.txn
            skip_below = txn.skip_below if txn is not None else {}
            try:
                for view in views:
                    if view[0] == _RECORD:
                        (topic_index, partition, offset, timestamp_ms, key, value,
                         headers) = fields(view)
                        tp = (topic_index, partition)
                        fed = fed_of.get(tp)
                        if fed is None:
                            fed = self._new_partition(tp)
                        fed.append(offset)
                        if skip_below and txn is not None \
                                and txn.committed_below(tp, offset):
                            self._done[tp].add(offset)  # committed by a predecessor
                            self._schedule_flush()
                            continue
                        append(make(topics[topic_index], partition, offset, timestamp_ms,
                                    key, value, headers))
                    else:
                        if batch:
                            host.feed_many(batch)
                            batch = []
                            append = batch.append
                        self._control(view)
                        topics = self.topics  # a TOPICS record replaces the table
            finally:
                del views
                ring.release()
                if batch:  # what was decoded before a damaged record is still fed
                    host.feed_many(batch)

    def _new_partition(self, tp: tuple[int, int]) -> collections.deque[int]:
        """The fed/done books of a (topic index, partition) seen for the first time."""
        fed = self._fed[tp] = collections.deque()
        self._done[tp] = set()
        if self.tables is not None:
            self.tables.open_partition(tp[1])
        if self.txn is not None:
            self.txn.note_partition(tp, self.topics[tp[0]])
        return fed

    def _control(self, view: memoryview) -> None:
        kind = view[0]
        if kind == wire.STOP:
            self._stopping = True
            self._finish(0)
        elif kind == wire.PING:
            self._send(wire.encode_pong(self.processed, self.host.in_flight))
            if self.tables is not None:
                self.tables.report()
            if self.txn is not None:
                self._send(self.txn.report())
        elif kind == wire.GROUP and self.txn is not None:
            self.txn.on_group(view)
        elif kind == wire.RELEASE:
            if self.tables is not None:
                self.tables.release(wire.decode_release(view))
        elif kind == wire.LEADER and self.settings.get("run_app_tasks"):
            self._background.lead(self.agent.app, bool(view[1]))
        elif kind == wire.CHANNEL:
            self.channels.feed(view, self._stopping)
        elif kind == wire.TOPICS:
            self.topics = wire.decode_topics(view)
            self.topic_index = {name: i for i, name in enumerate(self.topics)}
            self._done_by_name.clear()

    # ------------------------------------------------------------------ outbound

    def on_done(self, record: Any) -> None:
        """agentlib's "event finished, sinks included": mark it; ack on the next flush.

        A channel's record (routed by the supervisor, or fed by agentlib itself) has
        nothing to ack, but it counted against ``max_in_flight``: a pump that stopped
        at that bound resumes on the next flush all the same.
        """
        self.processed += 1
        name_tp = (record.topic, record.partition)
        done = self._done_by_name.get(name_tp)
        if done is None:
            done = self._done.get((self.topic_index.get(record.topic, -1), record.partition))
            if done is None:
                if self._throttled:
                    self._schedule_flush()
                return
            self._done_by_name[name_tp] = done
        done.add(record.offset)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self.flush_acks)

    def flush_acks(self) -> None:
        """Turn each partition's done prefix into one ACK range and write them out."""
        self._flush_scheduled = False
        for tp, done in self._done.items():
            if not done:
                continue
            fed = self._fed[tp]
            first = last = -1
            while fed and fed[0] in done:
                offset = fed.popleft()
                done.discard(offset)
                if offset != last + 1 and first >= 0:
                    # A gap: another instance may hold the offsets between (key/none
                    # ordering), so the range must not cover them.
                    self._outbox.append(wire.encode_ack(tp[0], tp[1], first, last))
                    first = -1
                if first < 0:
                    first = offset
                last = offset
            if first >= 0:
                self._outbox.append(wire.encode_ack(tp[0], tp[1], first, last))
        if self.txn is not None:
            self._transaction_step()
        self._write_outbox()
        if self._throttled and self.host.in_flight < self.max_in_flight:
            self._throttled = False
            self.pump()

    def _transaction_due(self, dry: bool = False) -> None:
        """Every interval (``dry``: an early commit's gap passed): quiesce, commit once
        idle. Via ``flush_acks``: what is done has its outputs in, so its ACK too."""
        txn, loop = self.txn, self._loop
        assert txn is not None and loop is not None
        if dry:
            txn.dry_timer = None
        else:
            txn.due()
            loop.call_later(txn.interval, self._transaction_due)
        self.flush_acks()

    def _transaction_step(self) -> None:
        """Under exactly once: ACKs wait for their transaction; it commits when due and
        the agent holds nothing (feeding resumes), or early when dry (transactions.py)."""
        txn, loop = self.txn, self._loop
        assert txn is not None and loop is not None
        txn.hold_acks(self._outbox, self.topics)
        if txn.quiescing and self.tables is not None:
            # Records fed so far finish only once their table writes are flushed (into
            # this transaction) and delivered: flush now, not at the window's end.
            self.tables.flush()
        wait = txn.commit_wait(self.host.in_flight == 0, time.monotonic())
        if wait and txn.dry_timer is None:
            txn.dry_timer = loop.call_later(wait, self._transaction_due, True)
        elif wait == 0.0 and txn.commit(self._outbox):
            self._write_outbox()
            loop.call_soon(self.pump)

    def _send(self, record: bytes) -> None:
        self._outbox.append(record)
        self._write_outbox()

    def _write_outbox(self) -> None:
        if not self._outbox:
            return
        written = self.outbound.write_many(self._outbox)
        del self._outbox[:written]
        if self._outbox and self._loop is not None:
            # The supervisor drains continuously; a full ack ring is brief.
            self._loop.call_later(0.001, self._write_outbox)

    async def _drain_outbox(self) -> None:
        while self._outbox:
            self._write_outbox()
            if self._outbox:
                await asyncio.sleep(0.001)

    def _on_agent_ended(self, task: asyncio.Task[None]) -> None:
        """The agent's task ended without a STOP: exit so the supervisor restarts us.

        Tells the supervisor first that the agent itself stopped, so the crash is not
        counted against a record it holds (poison detection).
        """
        if self._stopping or (self._exit is not None and self._exit.done()):
            return
        error = None if task.cancelled() else task.exception()
        reason = _one_line(error) if error is not None else "the agent function returned"
        log.error("agent %s stopped: %s; the instance exits to be restarted", self.name,
                  reason)
        self.flush_acks()
        self._send(wire.encode_error(0, -1, -1, wire.OUTCOME_AGENT_STOPPED, reason))
        self._stopping = True
        self._finish(EXIT_AGENT_STOPPED)

    def _finish(self, code: int) -> None:
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(code)

    # ------------------------------------------------------------------ errors

    async def on_error(self, record: Any, exc: BaseException, attempt: int) -> Any:
        """Apply the agent's ``on_error`` policy; return ``ErrorVerdict.ACK``/``RETRY``."""
        policy = self.settings.get("on_error", "log")
        if policy == "retry":
            if attempt <= int(self.settings.get("max_retries", 3)):
                backoff = float(self.settings.get("retry_backoff", 1.0))
                log.warning("agent %s: %s at %s[%d]@%d, retry %d in %.1fs", self.name,
                            _one_line(exc), record.topic, record.partition, record.offset,
                            attempt, backoff * attempt)
                await asyncio.sleep(backoff * attempt)
                return self._verdict.RETRY
            policy = "dead_letter" if self.settings.get("dead_letter_explicit") else "log"
        if policy == "dead_letter":
            await self.dead_letters.send(record, exc)
            self._report_handled_error(record, exc)
            return self._verdict.ACK
        if policy == "crash":
            log.critical("agent %s: %s at %s[%d]@%d; on_error=crash stops agentd", self.name,
                         _one_line(exc), record.topic, record.partition, record.offset,
                         exc_info=exc)
            self.flush_acks()
            self._send(wire.encode_error(self.topic_index[record.topic], record.partition,
                                         record.offset, wire.OUTCOME_CRASH, _one_line(exc)))
            self._stopping = True
            self._finish(EXIT_CRASH_POLICY)
            raise exc
        log.error("agent %s: error processing %s[%d]@%d", self.name, record.topic,
                  record.partition, record.offset, exc_info=exc)
        self._report_handled_error(record, exc)
        return self._verdict.ACK

    def _report_handled_error(self, record: Any, exc: BaseException) -> None:
        """Tell the supervisor a record failed and was handled (logged or dead-
        lettered): it counts errors per instance for status and metrics, and shows
        the last one. Records of in-process channels have no topic index: not sent."""
        topic_index = self.topic_index.get(record.topic)
        if topic_index is not None:
            self._send(wire.encode_error(topic_index, record.partition, record.offset,
                                         wire.OUTCOME_HANDLED, _one_line(exc)))
