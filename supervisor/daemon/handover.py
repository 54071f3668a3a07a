"""Replacing one instance's process without losing or repeating a record.

Used by a reload (old code → new code) and by recycling (``max_rss``, ``max_age``,
an instance that is told to go while healthy). The :class:`~supervisor.daemon.instances.Instance`
object stays: it keeps ``unacked`` and ``pending``, its router slot and its paused
partitions; only the process behind it changes. The steps:

0. **Warm** (unless scaling down): fork the successor from the current zygote on rings
   of its own that carry nothing but a ``PING``, with ``warm_first`` so the worker
   connects its producer before it reads (``Worker.warm_producer``: ~60-100 ms of
   connecting and metadata). Its ``PONG`` says it is ready; only then does the old
   process stop being fed, so start-up costs nothing in the processing gap.
1. **Detach** the old process from the instance (rings, pid, pidfd move into a
   :class:`Handover`) and write ``STOP`` into its inbound ring. From now on the
   instance has no ring, so new records routed to it queue in ``pending`` (and the
   partitions feeding it pause, as with a full ring): the old process is no longer fed.
2. **Drain**: the old process finishes what its ring holds and acks it; the handover
   reads its outbound ring and retires those records exactly as the loop does.
3. **Retired or exited**: its ``RETIRED`` report (it acked all it will ever ack;
   what is left is closing its producer) or its exit (pidfd readable; SIGKILL after
   ``shutdown_timeout`` plus a grace). A last read of its ring, then anything it still
   held unacked goes back to ``pending`` first (at-least-once: it never acked it).
4. **Start**: the warm successor is attached to the instance; ``pending`` flows into
   it. A retired process that is still exiting is watched by :meth:`Handover.exit_done`.

Nothing is processed twice because a record is either in the old ring (processed and
acked there) or in ``pending`` (processed by the new process); only a death before
the ack re-dispatches. Per-partition order holds because the new process gets nothing
until the old one has finished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time

from supervisor.daemon.commit import Committer
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import OUTBOUND_RING_SIZE, Instance, power_of_two
from supervisor.daemon.lifecycle import Lifecycle
from supervisor.transport import wire
from supervisor.transport.ring import Ring

__all__ = ["Handover"]

log = logging.getLogger("agentd.handover")

KILL_GRACE = 5.0  # past shutdown_timeout, before SIGKILL
WARM_TIMEOUT = 5.0  # a successor not ready by then is used anyway (it connects lazily)


class Handover:
    """One instance's old process on its way out; :meth:`poll` until it returns True."""

    def __init__(self, fleet: Fleet, committer: Committer, life: Lifecycle, inst: Instance,
                 why: str, replace: bool = True) -> None:
        """Fork and warm the successor of ``inst`` (step 0), or, when ``replace`` is
        False (scale down), detach its process and stop it at once (step 1). Acks of
        the old process go through ``committer`` exactly as the loop's do."""
        assert inst.pid is not None
        self.fleet = fleet
        self.committer = committer
        self.life = life
        self.inst = inst
        self.why = why
        self.inbound: Ring | None = None
        self.outbound: Ring | None = None
        self.pid: int = inst.pid
        self.pidfd: int | None = None
        self.started = time.monotonic()
        self.deadline = float("inf")
        self.stop_sent = False
        self.detached = False    # step 1 done
        self.retired = False     # its RETIRED report arrived
        self.exited = False      # steps 1-3 are done (retired or dead)
        self.pause_s: float | None = None  # detach → the new process fed
        self.successor: tuple[Ring, Ring, int, int | None] | None = None
        self.warm_until = self.started + WARM_TIMEOUT
        if replace:
            self._prestart()
        if self.successor is None:
            self._detach()

    def _detach(self) -> None:
        """Step 1: the instance's process and rings move here; STOP goes to it."""
        inst = self.inst
        self.detached = True
        self.started = time.monotonic()
        self.deadline = self.started + self.fleet.config.shutdown_timeout + KILL_GRACE
        if inst.pid is None:  # it died while the successor warmed: nothing to drain
            self.exited = True
            return
        self.inbound, self.outbound = inst.inbound, inst.outbound
        self.pid, self.pidfd = inst.pid, inst.pidfd
        inst.inbound = inst.outbound = None
        inst.pid = inst.pidfd = None
        inst.restart_at = None
        self._send_stop()
        log.info("%s: %s; draining pid %d", inst.label, self.why, self.pid)

    def _successor_ready(self) -> bool:
        """Step 0: the successor answered its PING (warm), died, or took too long."""
        assert self.successor is not None
        _inbound, outbound, _pid, pidfd = self.successor
        answered = bool(outbound.read_many(16))
        if answered:
            outbound.release()
        dead = pidfd is not None and bool(select.select([pidfd], [], [], 0)[0])
        return answered or dead or time.monotonic() >= self.warm_until

    def _prestart(self) -> None:
        """Fork the successor on fresh rings kept here (what ``Instance.spawn`` does,
        without attaching it: nothing may reach it before its predecessor is done)."""
        inst, fleet = self.inst, self.fleet
        if fleet.zygote is None:
            return
        inbound = Ring.create(power_of_two(inst.agent.config.ring_size))
        outbound = Ring.create(OUTBOUND_RING_SIZE)
        try:
            settings = {**fleet.worker_settings(inst), "ring_fds": [3, 3], "warm_first": True}
            pid = fleet.zygote.fork(inst.agent.name, settings, inbound.fds() + outbound.fds())
        except Exception as exc:  # start_new falls back to a plain spawn
            log.warning("%s: could not fork the successor early (%s)", inst.label, exc)
            inbound.close()
            outbound.close()
            return
        pidfd: int | None
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = None  # already gone: the loop's reaper sees it dead once attached
        inbound.watch_peer(pid)
        outbound.watch_peer(pid)
        inbound.try_write(wire.PING_RECORD)  # answered once it is warm
        self.successor = (inbound, outbound, pid, pidfd)

    def _send_stop(self) -> None:
        """``STOP`` through the ring (after what it holds); SIGTERM if it stays full."""
        if self.stop_sent or self.inbound is None:
            return
        if self.inbound.try_write(wire.STOP_RECORD):
            self.stop_sent = True
        elif time.monotonic() - self.started > 1.0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)  # the worker drains on SIGTERM too
            self.stop_sent = True

    def read(self) -> None:
        """Retire what the old process acked (the commit leg's own path); its other
        reports go to the loop's handler, except RETIRED, which ends step 2."""
        if self.outbound is None:
            return
        while True:
            views = self.outbound.read_many(4096)
            if not views:
                return
            records = [bytes(view) for view in views]
            del views
            self.outbound.release()
            self.committer.retire(self.inst, records, self._on_report)

    def _on_report(self, inst: Instance, record: bytes) -> None:
        if record[0] == wire.RETIRED:
            self.retired = True
        else:
            self.committer.on_report(inst, record)

    def poll(self) -> bool:
        """Advance; True once the old process retired or died (then :meth:`start_new`)."""
        if not self.detached:
            if not self._successor_ready():
                return False
            self._detach()
        if self.exited:
            return True
        self._send_stop()
        self.read()
        gone = self._gone()
        if not gone and not self.retired:
            if time.monotonic() >= self.deadline:
                log.warning("%s: pid %d did not drain in time; SIGKILL", self.inst.label,
                            self.pid)
                self.kill()
            return False
        self._finish_old()
        return True

    def exit_done(self) -> bool:
        """After :meth:`poll`: has the old process exited too? (SIGKILL past the grace.)"""
        if self.pidfd is None:
            return True
        if self._gone():
            os.close(self.pidfd)
            self.pidfd = None
            return True
        if time.monotonic() >= self.deadline:
            self.kill()
        return False

    def _gone(self) -> bool:
        if self.pidfd is None:
            return True
        readable, _, _ = select.select([self.pidfd], [], [], 0)
        return bool(readable)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def _finish_old(self) -> None:
        """Step 3: last read, close the old rings, re-queue anything it never acked."""
        self.read()
        for ring in (self.inbound, self.outbound):
            if ring is not None:
                ring.close()
        self.inbound = self.outbound = None
        self.exited = True
        inst = self.inst
        queued = set(inst.pending)
        lost = [key for key in inst.unacked if key not in queued]
        if lost:
            log.warning("%s: pid %d left %d records unacked; re-dispatching them",
                        inst.label, self.pid, len(lost))
            # unacked is in dispatch order, and pending holds its newest records
            inst.requeue_unacked()

    def start_new(self) -> None:
        """Step 4: the replacement process, from the daemon's current zygote."""
        inst, fleet = self.inst, self.fleet
        if not self.life.running:
            self.discard_successor()  # stopping: no replacement (a drain still needs one)
            return
        if self.successor is not None:
            inst.inbound, inst.outbound, inst.pid, inst.pidfd = self.successor
            self.successor = None
            inst.restart_at = None
            inst.retired = False
            log.info("%s started, pid %d", inst.label, inst.pid)
        else:
            assert fleet.zygote is not None
            try:
                inst.spawn(fleet.zygote, fleet.worker_settings(inst))
            except Exception as exc:  # the normal restart path retries with backoff
                log.error("%s: replacement did not start (%s); retrying", inst.label, exc)
                inst.restart_at = time.monotonic() + 0.5
        self.pause_s = time.monotonic() - self.started

    def discard_successor(self) -> None:
        """The successor will never be fed: kill it (it holds nothing) and close."""
        if self.successor is None:
            return
        inbound, outbound, pid, pidfd = self.successor
        self.successor = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        inbound.close()
        outbound.close()
        if pidfd is not None:
            os.close(pidfd)

    def close(self, timeout: float) -> None:
        """Shutdown: wait up to ``timeout`` for the drain and the exit, then SIGKILL.
        Still warming: only the successor goes (the instance keeps its process)."""
        self.discard_successor()
        if not self.detached:
            return
        deadline = time.monotonic() + timeout
        while not (self.poll() and self.exit_done()):
            if time.monotonic() >= deadline:
                self.kill()
                deadline = float("inf")
            time.sleep(0.005)
