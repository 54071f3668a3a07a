"""The supervisor's view of agent instances: rings, process, and what each one holds.

An :class:`Instance` owns the supervisor's ends of its two rings, the pidfd of its
process, and two collections the at-least-once promise rests on:

- ``unacked``: every record given to it and not yet acked, keyed by
  ``(topic index, partition, offset)`` in dispatch order, with its encoded bytes, so a
  crash can re-dispatch them in offset order. Kept per run of offsets
  (``unacked.py``): a dispatched run and an ACK range cost one step each.
- ``pending``: records dispatched to it that are not in its ring yet (the ring was
  full, the process is restarting, or a poison probe is out): its *backlog*, segments
  of those runs, moved into the ring as the worker frees space.

Flow control has hysteresis (issue 12). A full ring alone pauses nothing: the backlog
may grow to a high-water mark (:attr:`Instance.high_records` records or
:attr:`Instance.high_bytes` encoded bytes, both derived from the ring's size), and
only above it is the instance *blocked*: the partitions of its backlog are paused.
They resume once the backlog is below half of both marks, not when it is empty. Why:
``Consumer.pause`` throws away what librdkafka prefetched for those partitions, and
after ``resume`` the refetch can take a fetch backoff (up to ~1 s, measured) to
arrive; pausing on every full ring and resuming only when nothing was left starved
the worker for that long on every cycle. The supervisor's memory stays bounded: at
most the high-water mark plus one fetched batch per instance beyond the ring.

Recovery after a crash: what the instance held is re-dispatched in growing windows,
1 record, then 2, 4, 8, ... each written only when the previous window is fully acked,
until the records held at the crash are all through; then normal streaming resumes.
A crash while exactly one record of the window is unacked counts against that record
(``poison_after`` such crashes make it poison). A record that merely shared the ring
with the real culprit is never blamed, and a culprit among n records is isolated
within about log2(n) crashes even when the records ahead of it were processed but
not yet acked (their sinks' deliveries still pending) when it killed the worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from supervisor.daemon.unacked import Backlog, Key, Run, Segment, UnackedRecords
from supervisor.transport import wire
from supervisor.transport.ring import Ring

__all__ = ["CHANNEL_BOUND", "AgentRuntime", "Instance", "Key", "Run", "power_of_two"]

log = logging.getLogger("agentd.instances")

OUTBOUND_RING_SIZE = 1 << 20
#: Backlog records the pump writes with one ring call (one head publish).
WRITE_CHUNK = 4096
MAX_BACKOFF = 10.0
#: The backlog's high-water mark in records: one per this many bytes of ring (a 4 MiB
#: ring: 65,536 records), so the per-record overhead of tiny records stays bounded.
BYTES_PER_BACKLOG_RECORD = 64
#: Messages of a channel that may wait for one reading instance when the app sets no
#: ``maxsize``: Faust's ``stream_buffer_maxsize`` default (``channelflow.py``).
CHANNEL_BOUND = 4096
#: The backlog's high-water mark in bytes is the ring's size up to this (a 1 GiB ring
#: must not mean another GiB of supervisor memory per instance).
MAX_BACKLOG_BYTES = 64 << 20


def power_of_two(nbytes: int) -> int:
    """The smallest power of two >= ``nbytes`` (ring capacities must be one)."""
    return 1 << max(6, (nbytes - 1).bit_length())


@dataclass(eq=False)
class AgentRuntime:
    """One agent of the app as the supervisor runs it (its lane in the offset tracker)."""

    name: str
    lane: int
    topics: tuple[str, ...]
    config: Any  # supervisor.config.loader.AgentConfig
    app: str     # the id of the App that defines it
    instances: list[Instance] = field(default_factory=list)
    router: Any = None  # supervisor.daemon.router.Router
    #: the in-process channels it reads (their messages come through the supervisor)
    channels: tuple[str, ...] = ()
    #: the next instance a keyless channel message goes to (round robin)
    channel_turn: int = 0
    #: how many of its channel's messages may wait in the supervisor for one of its
    #: instances before the channel's senders wait (``channelflow.py``)
    channel_bound: int = CHANNEL_BOUND


class Instance:
    """One instance process of one agent (see the module docstring)."""

    def __init__(self, agent: AgentRuntime, index: int) -> None:
        self.agent = agent
        self.index = index
        self.label = f"{agent.name}[{index}]"
        self.inbound: Ring | None = None
        self.outbound: Ring | None = None
        capacity = power_of_two(agent.config.ring_size)
        self.max_record_size = capacity - 8
        #: Backlog high-water marks (see the module docstring): a second ring's worth.
        self.high_bytes = min(capacity, MAX_BACKLOG_BYTES)
        self.high_records = max(64, self.high_bytes // BYTES_PER_BACKLOG_RECORD)
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.unacked = UnackedRecords()
        self._pending = Backlog()
        #: Encoded bytes of the backlog; may over-count records dropped from ``unacked``
        #: meanwhile (revoked), never under-counts; exact again whenever it empties.
        self.pending_bytes = 0
        #: Control records (RELEASE) waiting for ring space; a dead process needs none.
        self.controls: deque[bytes] = deque()
        #: the channel messages among ``controls``, and their bytes (``channelflow.py``)
        self.channel_queued = 0
        self.channel_queued_bytes = 0
        self.paused: set[tuple[int, int]] = set()
        self.window = 0                  # recovery window size; 0: streaming normally
        self.window_keys: set[Key] = set()
        self.recover_left = 0            # records held at the crash not yet windowed
        self.crash_counts: dict[Key, int] = {}
        self.agent_stopped = False       # it reported that its agent function ended
        self.crashes_in_row = 0
        self.restarts = 0
        self.restart_at: float | None = time.monotonic()
        self.stopping = False
        self.retired = False
        self.processed = 0
        #: Its table shards as its process last reported them (``wire.TableRow``s).
        self.table_rows: list[Any] = []
        #: Moves while it replays a changelog (the monitor counts that as progress).
        self.table_progress = 0
        #: Exactly once: its process's last ``wire.TxnReport``, and the transactions
        #: its processes committed in all (a restart's count starts again at 0).
        self.txn: Any = None
        self.txn_commits = 0

    # ------------------------------------------------------------------ process

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def pending(self) -> Backlog:
        """The backlog: records in ``unacked`` not yet written to the ring, oldest first
        (iterating it gives their keys)."""
        return self._pending

    def requeue_unacked(self) -> None:
        """Everything it holds goes back in line, oldest first (a crash, a handover)."""
        self._pending = Backlog.of(self.unacked)
        self.pending_bytes = sum(map(len, self.unacked.values()))

    def spawn(self, zygote: Any, settings: dict[str, Any]) -> None:
        """Fresh rings, a fork from the zygote, a pidfd; then re-dispatch what it held.

        A failed fork (``ZygoteError``) leaves the instance as it was, rings closed.
        """
        inbound = Ring.create(power_of_two(self.agent.config.ring_size))
        outbound = Ring.create(OUTBOUND_RING_SIZE)
        try:
            pid = zygote.fork(self.agent.name, {**settings, "ring_fds": [3, 3]},
                              inbound.fds() + outbound.fds())
        except BaseException:
            inbound.close()
            outbound.close()
            raise
        self.inbound, self.outbound, self.pid = inbound, outbound, pid
        self.restart_at = None
        self.retired = False
        try:
            self.pidfd = os.pidfd_open(pid)
            inbound.watch_peer(pid)
            outbound.watch_peer(pid)
        except ProcessLookupError:
            pass  # exited and reaped already: the next reap sees it dead
        log.info("%s started, pid %d", self.label, pid)

    def lone_suspect(self) -> Key | None:
        """During recovery: the one record of the window still unacked, if exactly one
        (none when the worker said its agent function itself stopped)."""
        if self.window and len(self.window_keys) == 1 and not self.agent_stopped:
            (key,) = self.window_keys
            if key in self.unacked:
                return key
        return None

    def on_txn(self, report: Any) -> None:
        """A ``TXN`` report: keep it, and count the commits since the last one."""
        self.txn_commits += max(0, report.commits - (self.txn.commits if self.txn else 0))
        self.txn = report

    def died(self) -> None:
        """The process is gone: drop rings and pidfd, arm the restart with backoff.

        The caller reads the outbound ring one last time first (acks written just
        before the death still count).
        """
        for ring in (self.inbound, self.outbound):
            if ring is not None:
                ring.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        self.inbound = self.outbound = None
        self.pid = self.pidfd = None
        self.controls.clear()  # its exit released what they would have released
        self.channel_queued = self.channel_queued_bytes = 0
        self.table_rows = []   # its shards closed with it
        self.txn = None        # its open transaction is aborted by its successor
        self.agent_stopped = False
        self.crashes_in_row += 1
        self.restarts += 1
        backoff = min(MAX_BACKOFF, 0.1 * 2 ** (self.crashes_in_row - 1))
        self.restart_at = time.monotonic() + backoff
        # Everything it held goes back in line, oldest first, in recovery windows.
        self.requeue_unacked()
        self.window_keys = set()
        self.window = 1 if self.pending else 0
        self.recover_left = len(self.pending)

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)

    # ------------------------------------------------------------------ inbound

    def submit_runs(self, runs: list[Run]) -> list[tuple[int, int]]:
        """Write these runs (already in ``unacked``) or queue them in the backlog.

        Returns the partitions that must now be paused for this instance: none until
        the backlog passes its high-water mark; once blocked, the partitions of any
        further record queued."""
        return self._submit([[run, 0, len(run.records)] for run in runs])

    def submit(self, keys: list[Key], records: list[bytes] | None = None,
               ) -> list[tuple[int, int]]:
        """:meth:`submit_runs` for records named by key (already in ``unacked``; a
        lookup per key, for the paths that are not the hot one). ``records`` is
        accepted for the old call shape; the bytes are those ``unacked`` holds."""
        segments: list[Segment] = []
        for key in keys:
            found = self.unacked.locate(key)
            if found is None:
                continue
            run, i = found
            last = segments[-1] if segments else None
            if last is not None and last[0] is run and last[2] == i:
                last[2] = i + 1
            else:
                segments.append([run, i, i + 1])
        return self._submit(segments)

    def _submit(self, segments: list[Segment]) -> list[tuple[int, int]]:
        pending = self._pending
        queued = 0
        partial = -1  # bytes the ring took of a whole run it filled up in
        if not pending and not self.window and self.inbound is not None:
            if len(segments) == 1:
                run, start, end = segments[0]
                upto, partial = self.inbound.write_run(run.records, start, end)
                if upto == end:
                    return []
                if start:
                    partial = -1
                segments[0][1] = upto
            else:  # one ring call for all of them: the worker sees one batch
                left, _copied = self._write_flat(segments)
                for seg in segments:
                    if left < seg[2] - seg[1]:
                        seg[1] += left
                        break
                    left -= seg[2] - seg[1]
                    queued += 1
                else:
                    return []
        for seg in segments[queued:]:
            run, start, end = seg
            pending.add(run, start, end)
            whole = end == len(run.records) and run.nbytes >= 0  # counted when made
            if whole and start == 0:
                self.pending_bytes += run.nbytes
            elif whole and partial >= 0:
                self.pending_bytes += run.nbytes - partial
            else:
                self.pending_bytes += sum(map(len, filter(None, run.records[start:end])))
            partial = -1
        if self.paused:
            new_runs: Any = (seg[0] for seg in segments[queued:])
        elif len(pending) > self.high_records or self.pending_bytes > self.high_bytes:
            new_runs = (seg[0] for seg in pending.segments())  # blocked now: all feeders
        else:
            return []
        paused = self.paused
        newly: list[tuple[int, int]] = []
        for run in new_runs:
            tp = (run.tidx, run.partition)
            if tp not in paused:
                paused.add(tp)
                newly.append(tp)
        return newly

    def below_low_water(self) -> bool:
        """True when the backlog is under half of both high-water marks (resume)."""
        return (len(self._pending) <= self.high_records // 2
                and self.pending_bytes <= self.high_bytes // 2)

    def pump(self) -> bool:
        """Move backlog records into the ring; True when any moved.

        Call it while ``pending`` or ``window`` is set (recovery also ends here).
        """
        if self.inbound is None or self.stopping:
            return False
        while self.controls and self.inbound.try_write(self.controls[0]):
            sent = self.controls.popleft()
            if sent[0] == wire.CHANNEL:
                self.channel_queued -= 1
                self.channel_queued_bytes -= len(sent)
        if self.window:
            return self._pump_window()
        pending = self._pending
        segments = pending.segments()
        moved = False
        while segments:
            # The front segments, up to WRITE_CHUNK slots, each from its first slot not
            # retired; a dead run (revoked, poisoned meanwhile) as an empty one.
            chosen: list[Segment] = []
            slots = 0
            for seg in segments:
                run = seg[0]
                start = max(seg[1], run.lo) if run.alive else seg[2]
                chosen.append([run, start, seg[2]])
                slots += seg[2] - start
                if slots >= WRITE_CHUNK:
                    break
            left, copied = self._write_flat(chosen)
            if copied:
                moved = True
                self.pending_bytes -= copied
            full = left < slots
            for _run, start, end in chosen:
                if left >= end - start:
                    left -= end - start
                    pending.consumed(segments[0], end)
                else:
                    pending.consumed(segments[0], start + left)
                    break
            if full:
                break
        if not pending:
            self.pending_bytes = 0
        return moved

    def _write_flat(self, segments: list[Segment]) -> tuple[int, int]:
        """Write the segments' records in order with one ring call (one head publish);
        returns the slots taken and the bytes copied."""
        assert self.inbound is not None
        flat: list[Any] = []
        for run, start, end in segments:
            flat += run.records if start == 0 and end == len(run.records) \
                else run.records[start:end]
        return self.inbound.write_run(flat, 0, len(flat))

    def _pump_window(self) -> bool:
        """Recovery: write the next window once the previous one is fully acked."""
        assert self.inbound is not None
        if self.window_keys:
            self.window_keys = {key for key in self.window_keys if key in self.unacked}
            if self.window_keys:
                return False
        if self.recover_left <= 0 or not self._pending:
            self.window = 0        # through the records held at the crash
            return self.pump()
        pending = self._pending
        keys, records = pending.peek(self.window)
        written = self.inbound.write_many(records) if records else 0
        pending.drop(written)
        self.pending_bytes -= sum(map(len, records[:written]))
        if not pending:
            self.pending_bytes = 0
        self.window_keys = set(keys[:written])
        self.recover_left -= self.window
        self.window *= 2
        return written > 0

    def release_paused(self) -> list[tuple[int, int]]:
        """Once the backlog is below its low-water mark: the partitions to resume."""
        if not self.paused or not self.below_low_water():
            return []
        released = list(self.paused)
        self.paused.clear()
        return released

    def send_control(self, record: bytes) -> bool:
        return self.inbound is not None and self.inbound.try_write(record)

    def queue_control(self, record: bytes) -> None:
        """Send a control record that must arrive: now, or from :meth:`pump` once the
        ring has room (ahead of the backlog; controls name no record of it)."""
        if not self.controls and self.send_control(record):
            return
        self.controls.append(record)

    def queue_channel(self, record: bytes) -> None:
        """:meth:`queue_control` for a ``CHANNEL`` record, counted while it waits."""
        if not self.controls and self.send_control(record):
            return
        self.controls.append(record)
        self.channel_queued += 1
        self.channel_queued_bytes += len(record)

    def channel_behind(self) -> bool:
        """Its channel's messages waiting here reached the agent's bound, or a ring's
        worth of bytes (the backlog's byte mark): its channel's senders should wait."""
        return (self.channel_queued >= self.agent.channel_bound
                or self.channel_queued_bytes >= self.high_bytes)

    def channel_caught_up(self) -> bool:
        """Below half of both marks again: its channel's senders may go on."""
        return (self.channel_queued <= self.agent.channel_bound // 2
                and self.channel_queued_bytes <= self.high_bytes // 2)

    # ------------------------------------------------------------------ outbound

    def acked(self, topic_index: int, partition: int, first: int, last: int) -> None:
        """Retire the records of an ACK range; a live instance's crash streak ends."""
        self.unacked.retire(topic_index, partition, first, last)  # per run, not record
        self.crashes_in_row = 0

    def read_outbound(self, max_records: int = 4096) -> list[bytes]:
        """The next outbound records, copied (the ring space is released at once)."""
        if self.outbound is None:
            return []
        views = self.outbound.read_many(max_records)
        if not views:
            return []
        records = [bytes(view) for view in views]
        del views
        self.outbound.release()
        return records

    def forget(self, topic_index: int, partition: int) -> None:
        """A revoked partition: its records are no longer this instance's to finish."""
        self._pending.drop_partitions({(topic_index, partition)}, self.unacked)
        self.unacked.forget(topic_index, partition)
        self.paused.discard((topic_index, partition))

    def stats(self) -> dict[str, Any]:
        return {"pid": self.pid, "unacked": len(self.unacked), "pending": len(self.pending),
                "restarts": self.restarts}
