"""Where the daemon is in its life: running, draining for a stop, or stopped.

One small object that every part of the loop may read (the monitor leaves a draining
daemon alone, a reload finishes its handover but starts nothing new, a revoke stops
waiting once the daemon stops), and only the supervisor changes. Parts get this
instead of the whole :class:`~supervisor.daemon.supervisor.Supervisor`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Lifecycle"]


@dataclass
class Lifecycle:
    """The daemon's run state; the supervisor is its only writer."""

    running: bool = True
    #: monotonic deadline of the shutdown drain; None while not draining
    draining_until: float | None = None
    #: a second SIGINT: no more waiting for anything
    forced: bool = False
    exit_code: int = 0

    @property
    def draining(self) -> bool:
        return self.draining_until is not None

    @property
    def serving(self) -> bool:
        """Running and not draining: new work (reloads, recycles, checks) may start."""
        return self.running and self.draining_until is None
