"""The supervisor's view of agent instances: rings, process, and what each one holds.

An :class:`Instance` owns the supervisor's ends of its two rings, the pidfd of its
process, and two collections the at-least-once promise rests on:

- ``unacked``: every record given to it and not yet acked, keyed by
  ``(topic index, partition, offset)`` in dispatch order (a dict keeps insertion
  order), with its encoded bytes, so a crash can re-dispatch them in offset order.
- ``pending``: keys of records dispatched to it that are not in its ring yet (the ring
  was full, the process is restarting, or a poison probe is out). While ``pending`` is
  not empty the instance is *blocked*: the partitions of those records are paused.

Poison probe: after a crash the oldest unacked record is written **alone**; the rest
wait until it is acked. Only a crash during such a probe counts against the record, so
a record that merely shared a ring with the real culprit is never blamed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from supervisor.ring import RecordTooLarge, Ring

__all__ = ["AgentRuntime", "Instance", "Key", "power_of_two"]

log = logging.getLogger("agentd.instances")

Key = tuple[int, int, int]  # topic index, partition, offset
OUTBOUND_RING_SIZE = 1 << 20
WRITE_CHUNK = 4096
MAX_BACKOFF = 10.0


def power_of_two(nbytes: int) -> int:
    """The smallest power of two >= ``nbytes`` (ring capacities must be one)."""
    return 1 << max(6, (nbytes - 1).bit_length())


@dataclass(eq=False)
class AgentRuntime:
    """One agent of the app as the supervisor runs it (its lane in the offset tracker)."""

    name: str
    lane: int
    topics: tuple[str, ...]
    config: Any  # supervisor.config.AgentConfig
    instances: list[Instance] = field(default_factory=list)
    router: Any = None  # supervisor.router.Router


class Instance:
    """One instance process of one agent (see the module docstring)."""

    def __init__(self, agent: AgentRuntime, index: int) -> None:
        self.agent = agent
        self.index = index
        self.label = f"{agent.name}[{index}]"
        self.inbound: Ring | None = None
        self.outbound: Ring | None = None
        self.max_record_size = power_of_two(agent.config.ring_size) - 8
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.unacked: dict[Key, bytes] = {}
        self.pending: deque[Key] = deque()
        self.paused: set[tuple[int, int]] = set()
        self.probe: Key | None = None
        self.probe_written = False
        self.crash_counts: dict[Key, int] = {}
        self.crashes_in_row = 0
        self.restarts = 0
        self.restart_at: float | None = time.monotonic()
        self.stopping = False
        self.retired = False
        self.processed = 0

    # ------------------------------------------------------------------ process

    @property
    def running(self) -> bool:
        return self.pid is not None

    def spawn(self, zygote: Any, settings: dict[str, Any]) -> None:
        """Fresh rings, a fork from the zygote, a pidfd; then re-dispatch what it held."""
        self.inbound = Ring.create(power_of_two(self.agent.config.ring_size))
        self.outbound = Ring.create(OUTBOUND_RING_SIZE)
        fds = self.inbound.fds() + self.outbound.fds()
        self.pid = zygote.fork(self.agent.name, {**settings, "ring_fds": [3, 3]}, fds)
        self.restart_at = None
        self.retired = False
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self.pidfd = None  # already gone: the next check sees it dead
        self.inbound.watch_peer(self.pid)
        self.outbound.watch_peer(self.pid)
        log.info("%s started, pid %d", self.label, self.pid)

    def is_dead(self) -> bool:
        """Non-blocking: has the process exited? (pidfd readable, or it never had one)."""
        if self.pid is None:
            return False
        if self.pidfd is None:
            return True
        import select

        readable, _, _ = select.select([self.pidfd], [], [], 0)
        return bool(readable)

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
        self.crashes_in_row += 1
        self.restarts += 1
        backoff = min(MAX_BACKOFF, 0.1 * 2 ** (self.crashes_in_row - 1))
        self.restart_at = time.monotonic() + backoff
        # Everything it held goes back in line, oldest first; the oldest goes alone.
        self.pending = deque(self.unacked)
        self.probe = self.pending[0] if self.pending else None
        self.probe_written = False

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)

    # ------------------------------------------------------------------ inbound

    def submit(self, keys: list[Key]) -> list[tuple[int, int]]:
        """Write these (already in ``unacked``) records, or queue them when blocked.

        Returns the partitions that must now be paused for this instance.
        """
        if not self.pending and self.inbound is not None:
            unacked = self.unacked
            records = [unacked[key] for key in keys]
            written = self.inbound.write_many(records)
            if written == len(keys):
                return []
            keys = keys[written:]
        self.pending.extend(keys)
        newly: list[tuple[int, int]] = []
        for tidx, partition, _offset in keys:
            tp = (tidx, partition)
            if tp not in self.paused:
                self.paused.add(tp)
                newly.append(tp)
        return newly

    def pump(self) -> bool:
        """Move pending records into the ring; True when any moved (or a probe ended)."""
        if not self.pending or self.inbound is None or self.stopping:
            return False
        unacked, pending = self.unacked, self.pending
        if self.probe is not None:
            if self.probe in unacked:
                if self.probe_written:
                    return False
                if pending[0] == self.probe and self._write_one(unacked[self.probe]):
                    pending.popleft()
                    self.probe_written = True
                    return True
                return False
            self.probe = None  # acked, or taken out as poison
        while pending and pending[0] not in unacked:
            pending.popleft()  # forgotten (partition revoked) or poisoned meanwhile
        moved = False
        while pending:
            keys = [pending[i] for i in range(min(WRITE_CHUNK, len(pending)))]
            keys = [key for key in keys if key in unacked]
            written = self.inbound.write_many([unacked[key] for key in keys])
            for _ in range(written):
                pending.popleft()
            moved = moved or written > 0
            if written < len(keys):
                break
        return moved

    def _write_one(self, record: bytes) -> bool:
        assert self.inbound is not None
        try:
            return self.inbound.try_write(record)
        except RecordTooLarge:
            return False

    def release_paused(self) -> list[tuple[int, int]]:
        """When nothing is pending any more: the partitions this instance may resume."""
        if self.pending or not self.paused:
            return []
        released = list(self.paused)
        self.paused.clear()
        return released

    def send_control(self, record: bytes) -> bool:
        return self.inbound is not None and self.inbound.try_write(record)

    # ------------------------------------------------------------------ outbound

    def acked(self, topic_index: int, partition: int, first: int, last: int) -> None:
        """Retire the records of an ACK range; a live instance's crash streak ends."""
        unacked = self.unacked
        pop = unacked.pop
        for offset in range(first, last + 1):
            pop((topic_index, partition, offset), None)
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
        for key in [k for k in self.unacked if k[0] == topic_index and k[1] == partition]:
            del self.unacked[key]
        self.paused.discard((topic_index, partition))

    def stats(self) -> dict[str, Any]:
        return {"pid": self.pid, "unacked": len(self.unacked), "pending": len(self.pending),
                "restarts": self.restarts}
