"""The daemon's operator-facing side: control socket, sd_notify, watchdog, metrics.

Kept out of ``supervisor.py`` so the data path stays readable: the supervisor makes one
:class:`Operations` at start, calls :meth:`Operations.tick` once per loop turn and
:meth:`Operations.close` at exit, and reports the few facts it alone sees through
the ``on_*`` hooks (one line each at the place they happen). Everything here runs
in the loop thread; the only other thread is the optional Prometheus HTTP server,
which reads an immutable snapshot swapped in by the loop.

Control commands map onto what signals already do, so there is one code path per
action: ``stop`` queues SIGTERM (graceful drain), ``reload`` queues SIGHUP.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from supervisor.daemon.instances import Instance
from supervisor.daemon.ops import notify, snapshot
from supervisor.daemon.ops.control import ControlServer
from supervisor.transport import wire

if TYPE_CHECKING:
    from supervisor.daemon.ops.metrics import MetricsServer

__all__ = ["Operations"]

log = logging.getLogger("agentd.ops")

CONTROL_POLL_EVERY = 0.05   # seconds between control-socket polls in a busy loop
REFRESH_EVERY = 1.0         # heartbeat PINGs, STATUS= line, metrics snapshot
COMMIT_TIMING_WINDOW = 60.0  # a commit unanswered this long is not timed


class _LastWarning(logging.Handler):
    """Remembers the supervisor's last WARNING-or-worse log line for ``status``."""

    def __init__(self, seen: snapshot.Observations) -> None:
        super().__init__(logging.WARNING)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage().splitlines()[0] if record.msg else ""
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        self.seen.last_error = {"at": record.created, "level": record.levelname,
                                "message": message}


class Operations:
    """Owns the control socket, the notifier timing and the metrics endpoint."""

    def __init__(self, parts: snapshot.Sources,
                 queue_signal: Callable[[int, object], None]) -> None:
        """Binds the control socket at once: a second daemon on the same
        ``state_dir`` fails here, before it touches Kafka (``ControlError``).
        ``queue_signal`` is the supervisor's signal handler: control commands act
        exactly as the signals do."""
        self.parts = parts
        self.fleet = parts.fleet
        self.queue_signal = queue_signal
        self.seen = snapshot.Observations()
        self.probe = snapshot.ProcessProbe()
        config = self.fleet.config
        self.control = ControlServer(config.state_dir)
        self.notifying = notify.Notifier().enabled  # under systemd Type=notify
        self.watchdog_every = notify.watchdog_interval()
        self.next_watchdog = 0.0
        self.next_control = 0.0
        self.next_refresh = 0.0
        self.last_status_line = ""
        self._commit_starts: deque[float] = deque(maxlen=64)
        self.metrics: MetricsServer | None = None
        if config.metrics.port is not None:
            from supervisor.daemon.ops.metrics import MetricsServer

            try:
                self.metrics = MetricsServer(config.metrics)
            except BaseException:  # port taken, library missing: leave no socket file
                self.control.close()
                raise
        self._log_handler = _LastWarning(self.seen)
        logging.getLogger("agentd").addHandler(self._log_handler)

    # ------------------------------------------------------------------ loop

    def tick(self) -> None:
        """Once per loop turn; cheap unless something is due (a clock read)."""
        now = time.monotonic()
        if now >= self.next_control:
            self.next_control = now + CONTROL_POLL_EVERY
            self.control.poll_once(self.handle_request)
        if self.watchdog_every is not None and now >= self.next_watchdog:
            self.next_watchdog = now + self.watchdog_every
            notify.watchdog()
        if now >= self.next_refresh:
            self.next_refresh = now + REFRESH_EVERY
            self.refresh()

    def refresh(self) -> None:
        """PING every instance (its PONG carries the processed count that status,
        metrics and the monitor's progress check read), then publish the STATUS=
        line and the metrics snapshot."""
        for inst in self.fleet.instances:
            if inst.pid is not None and not inst.stopping:
                inst.send_control(wire.PING_RECORD)
        if self.metrics is None and not self.notifying:
            return  # nobody to publish to: skip building the document
        doc = self.status()
        line = status_line(doc)
        if line != self.last_status_line:
            self.last_status_line = line
            notify.status(line)
        if self.metrics is not None:
            self.metrics.publish(doc)

    def status(self) -> dict[str, Any]:
        """The status document (``agentd status --json``)."""
        return snapshot.build(self.parts, self.seen, self.probe)

    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Control-socket handler: ``status`` | ``reload`` | ``stop``."""
        cmd = request["cmd"]
        if cmd == "status":
            return self.status()
        if cmd == "reload":
            log.info("reload requested over the control socket")
            self.queue_signal(signal.SIGHUP, None)
            return {"reload": "queued"}
        log.info("stop requested over the control socket")
        self.queue_signal(signal.SIGTERM, None)
        return {"stop": "queued", "shutdown_timeout": self.fleet.config.shutdown_timeout}

    # ------------------------------------------------------------------ hooks

    def on_ready(self) -> None:
        """Consuming: READY=1 with a first STATUS= line."""
        notify.ready(f"consuming {len(self.fleet.topics)} topics with "
                     f"{len(self.fleet.instances)} instances")

    def on_stopping(self) -> None:
        """Draining for shutdown: STOPPING=1."""
        notify.stopping()
        notify.status("draining")

    def on_instance_error(self, inst: Instance, message: str = "") -> None:
        """An instance reported an error for a record (any policy outcome); it is
        counted and, being the newest problem, becomes status's ``last_error``."""
        self.seen.errors[inst.label] = self.seen.errors.get(inst.label, 0) + 1
        if message:
            now = time.time()
            self.seen.instance_errors[inst.label] = {"at": now, "message": message}
            self.seen.last_error = {"at": now, "level": "ERROR",
                                    "message": f"{inst.label}: {message}"}

    def on_commit_sent(self) -> None:
        """A commit request left (its answer comes through :meth:`on_commit_done`)."""
        self._commit_starts.append(time.monotonic())

    def on_commit_done(self, error: Any, partitions: list[Any]) -> None:
        """The broker answered a commit (confluent-kafka's ``on_commit`` arguments):
        time it, remember the offsets it accepted."""
        now = time.monotonic()
        while self._commit_starts and now - self._commit_starts[0] > COMMIT_TIMING_WINDOW:
            self._commit_starts.popleft()
        if self._commit_starts:
            latency = now - self._commit_starts.popleft()
            self.seen.last_commit_latency = latency
            if self.metrics is not None:
                self.metrics.observe_commit(latency)
        if error is not None:
            self.seen.commit_failures += 1
            return
        self.seen.commits += 1
        self.seen.committed.update({(tp.topic, tp.partition): tp.offset for tp in partitions
                                    if tp.error is None})

    def on_reload_started(self) -> None:
        """A reload began: RELOADING=1 (with MONOTONIC_USEC), state ``reloading``."""
        notify.reloading()
        notify.status("reloading")
        self.seen.reload_state = "reloading"
        self.seen.reload_at = time.time()

    def on_reload_finished(self, error: str | None = None) -> None:
        """A reload ended (``error`` None: new code runs; else the old code still
        does). Either way the daemon is serving again: READY=1."""
        self.seen.reloads += 1
        self.seen.reload_state = "failed" if error else "idle"
        self.seen.reload_error = error
        notify.ready("reload failed: old code still running" if error else "reloaded")

    def close(self) -> None:
        """At exit: remove the socket (clients then see "not running"), stop metrics."""
        logging.getLogger("agentd").removeHandler(self._log_handler)
        self.control.close()
        if self.metrics is not None:
            self.metrics.close()


def status_line(doc: dict[str, Any]) -> str:
    """One line for systemd's STATUS= (``systemctl status``)."""
    up = sum(1 for i in doc["instances"] if i["state"] == "running")
    return (f"{doc['state']}: {up}/{len(doc['instances'])} instances, "
            f"{len(doc['partitions'])} partitions, lag {doc['lag']}, "
            f"processed {sum(i['processed'] for i in doc['instances'])}")
