"""The supervisor's view of agent instances: rings, process, and what each one holds.

An :class:`Instance` owns the supervisor's ends of its two rings, the pidfd of its
process, and two collections the at-least-once promise rests on:

- ``unacked``: every record given to it and not yet acked, keyed by
  ``(topic index, partition, offset)`` in dispatch order (a dict keeps insertion
  order), with its encoded bytes, so a crash can re-dispatch them in offset order.
- ``pending``: keys of records dispatched to it that are not in its ring yet (the ring
  was full, the process is restarting, or a poison probe is out). While ``pending`` is
  not empty the instance is *blocked*: the partitions of those records are paused.

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

from supervisor.ring import Ring

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
    app: str     # the id of the App that defines it
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

    # ------------------------------------------------------------------ process

    @property
    def running(self) -> bool:
        return self.pid is not None

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
        self.agent_stopped = False
        self.crashes_in_row += 1
        self.restarts += 1
        backoff = min(MAX_BACKOFF, 0.1 * 2 ** (self.crashes_in_row - 1))
        self.restart_at = time.monotonic() + backoff
        # Everything it held goes back in line, oldest first, in recovery windows.
        self.pending = deque(self.unacked)
        self.window_keys = set()
        self.window = 1 if self.pending else 0
        self.recover_left = len(self.pending)

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)

    # ------------------------------------------------------------------ inbound

    def submit(self, keys: list[Key]) -> list[tuple[int, int]]:
        """Write these (already in ``unacked``) records, or queue them when blocked.

        Returns the partitions that must now be paused for this instance.
        """
        if not self.pending and not self.window and self.inbound is not None:
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
        """Move pending records into the ring; True when any moved.

        Call it while ``pending`` or ``window`` is set (recovery also ends here).
        """
        if self.inbound is None or self.stopping:
            return False
        unacked, pending = self.unacked, self.pending
        while pending and pending[0] not in unacked:
            pending.popleft()  # forgotten (partition revoked) or poisoned meanwhile
        if self.window:
            return self._pump_window()
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

    def _pump_window(self) -> bool:
        """Recovery: write the next window once the previous one is fully acked."""
        assert self.inbound is not None
        if self.window_keys:
            self.window_keys = {key for key in self.window_keys if key in self.unacked}
            if self.window_keys:
                return False
        if self.recover_left <= 0 or not self.pending:
            self.window = 0        # through the records held at the crash
            return self.pump()
        unacked, pending = self.unacked, self.pending
        keys: list[Key] = []
        while pending and len(keys) < self.window:
            key = pending.popleft()
            if key in unacked:
                keys.append(key)
        records = [unacked[key] for key in keys]
        written = self.inbound.write_many(records) if records else 0
        for key in reversed(keys[written:]):
            pending.appendleft(key)
        self.window_keys = set(keys[:written])
        self.recover_left -= self.window
        self.window *= 2
        return written > 0

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
