"""SIGHUP / ``agentd reload``: new code and config without stopping, or nothing at all.

gunicorn's HUP replaces workers before it knows the new code imports; a syntax error
then takes the service down. Here the new code must prove itself first:

1. **Config**: the file is re-read; a ``ConfigError``, or a change to a key that only a
   restart can apply (broker, group, ``[kafka]``, ``state_dir``, an agent's
   ``ordering``), refuses the reload.
2. **Canary**: a new zygote is exec'd and imports the app afresh, *without blocking the
   loop* (its socket is polled each turn). An import error, or an app whose agents or
   their topics differ from the running ones (that needs a new subscription: a
   restart), refuses the reload. A refusal is one ``ERROR`` line (traceback at
   ``DEBUG``), ``status`` shows it, and the running instances are never touched.
3. **Roll**: one instance at a time, a :class:`~supervisor.daemon.handover.Handover` stops
   feeding the old process, lets it drain and ack, and starts its replacement from
   the new zygote on the same router slot (same partitions/keys).
4. **Scale** to the new ``instances`` counts: extra instances are added, or the
   highest ones are routed around and retired the same way; then the old zygote,
   now childless, is stopped.

One reload runs at a time: a request during a reload is queued (several collapse into
one, which reads the newest files). Everything runs in the supervisor's loop; the
signal handler only sets the request.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from typing import Any, Protocol

from supervisor.config.loader import Config, ConfigError, load_config, validate_agent_names
from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.handover import Handover
from supervisor.daemon.instances import Instance, power_of_two
from supervisor.daemon.lifecycle import Lifecycle
from supervisor.daemon.zygote import Zygote, ZygoteError
from supervisor.transport import wire
from supervisor.transport.forkserver import MAX_PACKET as _MAX_PACKET

__all__ = ["Reloader"]

log = logging.getLogger("agentd.reload")

CANARY_TIMEOUT = 60.0
_RESTART_ONLY = ("broker", "group_id", "kafka", "state_dir", "metrics")


class ReloadRefused(Exception):
    """The new code or config cannot replace the running one; the message says why."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.detail = detail


class Canary:
    """A zygote importing the app in the background; :meth:`poll` until it answers."""

    def __init__(self, apps: list[str], env: dict[str, str]) -> None:
        self.proc, ours = Zygote.exec(apps, env)
        self.sock: socket.socket | None = ours
        self.deadline = time.monotonic() + CANARY_TIMEOUT

    def poll(self) -> Zygote | None:
        """The new zygote once it imported the app; None while it still imports.

        Raises :class:`ReloadRefused` when the import failed or took too long.
        """
        assert self.sock is not None
        ready, _, _ = select.select([self.sock], [], [], 0)
        if not ready:
            if time.monotonic() < self.deadline:
                return None
            self.discard()
            raise ReloadRefused(f"the new code did not import within {CANARY_TIMEOUT:.0f}s")
        packet = self.sock.recv(_MAX_PACKET)
        if not packet:
            self.discard()
            raise ReloadRefused("the new zygote exited before reporting its agents")
        sock, self.sock = self.sock, None  # the Zygote owns it now, or it is closed
        try:
            return Zygote.from_report(self.proc, sock, packet)
        except ZygoteError as exc:
            raise ReloadRefused(str(exc), exc.detail) from None

    def discard(self) -> None:
        """Close and reap the canary (it exits on EOF; killed if it is still importing)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()


class ReloadObserver(Protocol):
    """Who tells systemd and ``status`` that a reload runs (the ops side)."""

    def on_reload_started(self) -> None: ...

    def on_reload_finished(self, error: str | None = None) -> None: ...


class Reloader:
    """The reload state machine: idle → canary → rolling → idle (see module docstring).
    Also runs recycles (one instance's process replaced, same code) when idle."""

    def __init__(self, fleet: Fleet, datapath: DataPath, committer: Committer,
                 life: Lifecycle) -> None:
        self.fleet = fleet
        self.datapath = datapath
        self.committer = committer
        self.life = life
        self.observer: ReloadObserver | None = None
        self.requested = False
        self.state = "idle"
        self.canary: Canary | None = None
        self.new_config: Config | None = None
        self.old_zygote: Zygote | None = None
        self.retiring_zygotes: list[Zygote] = []  # rolled off; closed once childless
        self.exiting: list[Handover] = []          # retired processes not yet exited
        self.old_pids: set[int] = set()
        self.to_retire: list[Instance] = []
        self.handover: Handover | None = None
        self.started = 0.0
        self.pauses: list[float] = []
        self.last_result: dict[str, Any] | None = None
        self.recycle_queue: list[tuple[Instance, int | None, str]] = []

    def recycle(self, inst: Instance, why: str) -> None:
        """Replace ``inst``'s process gracefully (max_rss/max_age), when no reload runs."""
        self.recycle_queue.append((inst, inst.pid, why))

    def request(self) -> None:
        """Ask for a reload (signal-safe: sets a flag; the loop does the rest)."""
        self.requested = True

    @property
    def busy(self) -> bool:
        return self.state != "idle" or self.handover is not None

    # ------------------------------------------------------------------ loop

    def poll(self) -> None:
        """Once per loop turn: advance whatever step the reload is in.

        While the daemon drains for shutdown, a handover under way still completes
        (its successor takes the records queued for it, so the drain can finish), but
        nothing new starts and a canary still importing is dropped.
        """
        if self.exiting or self.retiring_zygotes:
            self.reap_exiting()
        if not self.life.running or not self.finish_handover():
            return
        if self.life.draining:
            if self.canary is not None:
                self.canary.discard()
                self.canary = None
                self.refuse(ReloadRefused("shutdown began before the new code was ready"))
            return
        if self.state == "idle":
            if self.requested:
                self.requested = False
                self.begin()
            elif self.recycle_queue:
                inst, pid, why = self.recycle_queue.pop(0)
                if inst.pid is not None and inst.pid == pid and inst in self.fleet.instances:
                    self.handover = self.hand_over(inst, why)
        elif self.state == "canary":
            self.poll_canary()
        elif self.state == "rolling":
            self.poll_rolling()

    def hand_over(self, inst: Instance, why: str, replace: bool = True) -> Handover:
        return Handover(self.fleet, self.committer, self.life, inst, why, replace)

    def poll_handovers(self) -> None:
        """Keep the draining old process's acks flowing (called while the loop waits)."""
        if self.handover is not None:
            self.handover.read()

    def finish_handover(self) -> bool:
        """Advance the handover under way; True when none is left running."""
        if self.handover is None:
            return True
        if not self.handover.poll():
            return False
        done, self.handover = self.handover, None
        self.exiting.append(done)
        if done.inst in self.to_retire:
            self.remove_instance(done.inst)
            return True
        done.inst.max_record_size = power_of_two(done.inst.agent.config.ring_size) - 8
        done.start_new()
        if self.state == "idle":
            log.info("%s: recycled in %.0f ms", done.inst.label, (done.pause_s or 0) * 1000)
        elif done.pause_s is not None:
            self.pauses.append(done.pause_s)
        return True

    def begin(self) -> None:
        """Step 1 and the start of step 2 (never blocks on the import)."""
        self.started = time.monotonic()
        self.pauses = []
        if self.observer is not None:
            self.observer.on_reload_started()
        source = self.fleet.config.source
        log.info("reload: re-reading %s and importing the app afresh", source)
        try:
            config = load_config(source)
            self.check_restart_only(config)
        except ConfigError as exc:
            self.refuse(ReloadRefused(f"config error: {exc}"))
            return
        except ReloadRefused as exc:
            self.refuse(exc)
            return
        self.new_config = config
        env = self.fleet.env_for(config)
        try:
            self.canary = Canary(list(config.app), env)
        except OSError as exc:
            self.refuse(ReloadRefused(f"cannot start the new zygote: {exc}"))
            return
        self.state = "canary"

    def check_restart_only(self, config: Config) -> None:
        old = self.fleet.config
        for key in _RESTART_ONLY:
            if getattr(config, key) != getattr(old, key):
                raise ReloadRefused(f"config error: {key}: changing it needs a restart")
        for name, agent in config.agents.items():
            before = next((a for a in old.agents.values()
                           if a.name == name or a.name.rsplit(".", 1)[-1] == name), None)
            ordering = before.ordering if before is not None else "partition"
            if agent.ordering != ordering:
                raise ReloadRefused(f"config error: agents.{name}.ordering: changing it "
                                    f"needs a restart")

    def poll_canary(self) -> None:
        """Step 2: the canary answered? Check its agents, then switch zygotes."""
        assert self.canary is not None and self.new_config is not None
        try:
            zygote = self.canary.poll()
            if zygote is None:
                return
        except ReloadRefused as exc:
            self.canary = None
            self.refuse(exc)
            return
        self.canary = None
        try:
            config = self.check_agents(zygote, self.new_config)
        except (ConfigError, ReloadRefused) as exc:
            zygote.stop()
            reason = exc if isinstance(exc, ReloadRefused) else \
                ReloadRefused(f"config error: {exc}")
            self.refuse(reason)
            return
        self.switch(zygote, config)

    def check_agents(self, zygote: Zygote, config: Config) -> Config:
        """The new app must define the same agents on the same topics."""
        running = {a.name: tuple(a.topics) for a in self.fleet.agents}
        offered = {spec.name: tuple(spec.topics) for spec in zygote.agents}
        if running != offered:
            added = sorted(set(offered) - set(running))
            removed = sorted(set(running) - set(offered))
            changed = sorted(n for n in set(running) & set(offered)
                             if running[n] != offered[n])
            raise ReloadRefused(
                f"the new code changes the agent set (added {added or 'none'}, removed "
                f"{removed or 'none'}, topics changed {changed or 'none'}); restart agentd "
                f"to apply it")
        return validate_agent_names(config, list(offered))

    def switch(self, zygote: Zygote, config: Config) -> None:
        """Adopt the new config and zygote; instances still on the old code roll next."""
        self.old_zygote = self.fleet.zygote
        self.fleet.adopt(zygote, config)
        logging.getLogger().setLevel(config.log_level)
        self.old_pids = {inst.pid for inst in self.fleet.instances if inst.pid is not None}
        self.to_retire = []
        self.state = "rolling"
        log.info("reload: the new code imported in %.0f ms; rolling %d instance(s)",
                 (time.monotonic() - self.started) * 1000, len(self.old_pids))

    # ------------------------------------------------------------------ roll

    def poll_rolling(self) -> None:
        """Step 3 then 4: one handover at a time (:meth:`finish_handover` completes
        each), then scale, then finish."""
        if self.to_retire:
            inst = self.to_retire[0]
            if inst.pid is None:  # not running (restarting): nothing to drain
                self.remove_instance(inst)
            else:
                self.handover = self.hand_over(inst, "retired by reload (scale down)",
                                               replace=False)
            return
        for inst in self.fleet.instances:
            if inst.pid is not None and inst.pid in self.old_pids:
                self.old_pids.discard(inst.pid)
                self.handover = self.hand_over(inst, "reload")
                return
        if self.scale():
            return
        self.finish()

    def scale(self) -> bool:
        """Reach each agent's new instance count; True while retirements are queued."""
        fleet = self.fleet
        assert fleet.zygote is not None
        specs = {spec.name: spec for spec in fleet.zygote.agents}
        for agent in fleet.agents:
            want = agent.config.instances or specs[agent.name].concurrency
            have = len(agent.instances)
            if want == have:
                continue
            moves = agent.router.set_instances(want)
            if want > have:
                for index in range(have, want):
                    inst = Instance(agent, index)   # spawned by the loop at once
                    agent.instances.append(inst)
                    fleet.instances.append(inst)
            else:
                self.to_retire.extend(agent.instances[want:])
            log.info("reload: agent %s scales %d → %d instance(s)%s", agent.name, have, want,
                     f"; partitions moved: {moves}" if moves else "")
        return bool(self.to_retire)

    def remove_instance(self, inst: Instance) -> None:
        """A retired extra instance is gone: hand what it never acked to the others."""
        datapath = self.datapath
        self.to_retire.remove(inst)
        agent = inst.agent
        agent.instances.remove(inst)
        self.fleet.instances.remove(inst)
        datapath.resume(inst, list(inst.paused))
        leftover = list(inst.unacked.items())
        if leftover:
            log.info("%s: re-routing %d unacked records", inst.label, len(leftover))
            for key, encoded in leftover:
                tp = (self.fleet.topics[key[0]], key[1])
                target = agent.instances[agent.router.route(tp, wire.decode_record(encoded).key)]
                target.unacked[key] = encoded
                newly = target.submit([key])
                if newly:
                    datapath.pause(target, newly)

    def finish(self) -> None:
        """Everything runs the new code: the old zygote goes once its last child exits."""
        if self.old_zygote is not None:
            self.retiring_zygotes.append(self.old_zygote)
            self.old_zygote = None
        took = time.monotonic() - self.started
        longest = max(self.pauses, default=0.0)
        self.last_result = {"ok": True, "took_s": took, "longest_pause_s": longest,
                            "instances_rolled": len(self.pauses)}
        log.info("reload done in %.0f ms: %d instance(s) rolled, longest pause %.0f ms",
                 took * 1000, len(self.pauses), longest * 1000)
        self.state = "idle"
        if self.observer is not None:
            self.observer.on_reload_finished(None)

    def refuse(self, exc: ReloadRefused) -> None:
        """The old code keeps running untouched; say why once."""
        log.error("reload refused, the old code keeps running: %s", exc)
        if exc.detail:
            log.debug("reload: import traceback:\n%s", exc.detail)
        self.last_result = {"ok": False, "error": str(exc)}
        self.new_config = None
        self.state = "idle"
        if self.observer is not None:
            self.observer.on_reload_finished(str(exc))

    # ------------------------------------------------------------------ stop

    def close(self, timeout: float) -> None:
        """Shutdown: let a draining old process finish (bounded), drop the canary,
        stop the old zygote once its last child is gone."""
        if self.canary is not None:
            self.canary.discard()
            self.canary = None
        if self.handover is not None:
            self.handover.close(timeout)
            if self.handover.inst in self.to_retire:
                self.to_retire.remove(self.handover.inst)
            self.handover = None
        deadline = time.monotonic() + timeout
        for handover in self.exiting:
            handover.close(max(0.0, deadline - time.monotonic()))
        self.exiting = []
        self.state = "idle"

    def reap_exiting(self) -> None:
        """Never blocks: forget processes that exited; then close rolled-off zygotes
        (closing the socket ends one; PR_SET_PDEATHSIG would end a child it still had)."""
        self.exiting = [h for h in self.exiting if not h.exit_done()]
        if self.exiting:
            return
        for zygote in list(self.retiring_zygotes):
            zygote.sock.close()
            if zygote.proc.poll() is not None:
                self.retiring_zygotes.remove(zygote)

    def stop_old_zygote(self) -> None:
        """After every instance stopped: any zygote a reload left behind."""
        for handover in self.exiting:
            handover.close(0.0)
        self.exiting = []
        if self.old_zygote is not None:
            self.retiring_zygotes.append(self.old_zygote)
            self.old_zygote = None
        for zygote in self.retiring_zygotes:
            zygote.stop()
        self.retiring_zygotes = []
