"""Instance health: hung workers are killed, bloated or old ones recycled gracefully.

Two different remedies, because the two situations differ:

- **No progress while holding work** (``heartbeat_timeout``): the worker has records
  in its ring and its processed count (reported in the ``PONG`` to the ``PING`` the
  loop sends every second, see :mod:`supervisor.daemon.ops.operations`) has not moved for
  ``heartbeat_timeout``: a stuck agent, a deadlock, a ``SIGSTOP``ped process. Waiting
  cannot help and a graceful drain would wait forever, so it gets ``SIGKILL``; the
  loop's crash path restarts it and re-dispatches what it held (the poison rule
  applies if one record keeps doing this). A worker replaying a table's changelog
  before its first record processes nothing for as long as that takes; its
  ``TABLES`` reports moving through the changelog count as progress.
- **Too big or too old** (``max_rss``, ``max_age``): the worker is healthy, just due
  for replacement (a slow leak, fragmentation). It is recycled like a reload rolls an
  instance (:class:`~supervisor.daemon.handover.Handover`: stop feeding, drain, ack, start a
  fresh fork), so nothing is lost or repeated. One at a time, never during a reload.

An idle worker (nothing in its ring) is never "hung": having no work is not a fault.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import Instance
from supervisor.daemon.lifecycle import Lifecycle

__all__ = ["Monitor"]

log = logging.getLogger("agentd.monitor")

CHECK_EVERY = 0.25  # seconds between health checks (cheap: dict reads, one psutil call)


@dataclass
class _Watch:
    """What the monitor remembers about one instance process."""

    pid: int
    spawned: float          # monotonic, when the monitor first saw this pid
    processed: int          # the count at the last sign of progress
    oldest: object          # the oldest unacked record then (an ack moves it)
    progress_at: float      # monotonic, the last sign of progress (or of having no work)
    table_progress: int = 0  # its changelog replay's position then
    proc: psutil.Process | None = None
    recycle_asked: bool = False


class Monitor:
    """Checked from the supervisor loop; acts through the loop's own paths."""

    def __init__(self, fleet: Fleet, life: Lifecycle,
                 recycle: Callable[[Instance, str], None]) -> None:
        """``recycle(inst, why)`` replaces a healthy process gracefully (the reloader's
        handover); a hung one is killed here and restarted by the loop's reaper."""
        self.fleet = fleet
        self.life = life
        self.recycle = recycle
        self.watches: dict[Instance, _Watch] = {}
        self.next_check = 0.0
        self.hangs_killed = 0
        self.recycled = 0

    def tick(self) -> None:
        """Once per loop turn; does work every :data:`CHECK_EVERY` seconds."""
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + CHECK_EVERY
        if not self.life.serving:
            return
        live = set()
        for inst in self.fleet.instances:
            if inst.pid is None or inst.stopping:
                continue
            live.add(inst)
            watch = self.watches.get(inst)
            if watch is None or watch.pid != inst.pid:
                watch = self.watches[inst] = _Watch(inst.pid, now, inst.processed,
                                                    None, now)
            self.check_progress(inst, watch, now)
            self.check_limits(inst, watch, now)
        for inst in [i for i in self.watches if i not in live]:
            del self.watches[inst]

    def check_progress(self, inst: Instance, watch: _Watch, now: float) -> None:
        """Kill a worker that holds records and has processed none for too long.

        Progress is a higher processed count (PONG), an ack of its oldest record
        (acks flow even when a full ring delays the PING), or a changelog replay that
        moved on (TABLES)."""
        in_ring = len(inst.unacked) - len(inst.pending)
        oldest = next(iter(inst.unacked), None)
        if in_ring <= 0 or inst.processed != watch.processed or oldest != watch.oldest \
                or inst.table_progress != watch.table_progress:
            watch.processed, watch.oldest, watch.progress_at = inst.processed, oldest, now
            watch.table_progress = inst.table_progress
            return
        timeout = inst.agent.config.heartbeat_timeout
        if now - watch.progress_at < timeout:
            return
        log.error("%s: no progress for %.1fs with %d records in hand; killing pid %d",
                  inst.label, now - watch.progress_at, in_ring, watch.pid)
        self.hangs_killed += 1
        inst.kill()           # the loop's reaper restarts it and re-dispatches
        watch.progress_at = float("inf")  # once per pid

    def check_limits(self, inst: Instance, watch: _Watch, now: float) -> None:
        """Ask for a graceful recycle past ``max_age`` or ``max_rss``."""
        if watch.recycle_asked:
            return
        cfg = inst.agent.config
        why = None
        if cfg.max_age is not None and now - watch.spawned >= cfg.max_age:
            why = f"recycled: older than max_age ({cfg.max_age:g}s)"
        elif cfg.max_rss is not None:
            rss = self.rss(watch)
            if rss is not None and rss > cfg.max_rss:
                why = f"recycled: RSS {rss / 2**20:.0f} MiB over max_rss " \
                      f"({cfg.max_rss / 2**20:.0f} MiB)"
        if why is not None:
            watch.recycle_asked = True
            self.recycled += 1
            self.recycle(inst, why)

    @staticmethod
    def rss(watch: _Watch) -> int | None:
        with contextlib.suppress(psutil.Error):
            if watch.proc is None:
                watch.proc = psutil.Process(watch.pid)
            return int(watch.proc.memory_info().rss)
        return None
