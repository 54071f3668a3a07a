"""Where the daemon is in its life: running, draining for a stop, or stopped.

One small object that every part of the loop may read (the monitor leaves a draining
daemon alone, a reload finishes its handover but starts nothing new, a revoke stops
waiting once the daemon stops), and only the supervisor changes. Parts get this
instead of the whole :class:`~supervisor.daemon.supervisor.Supervisor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Lifecycle", "StartupError"]


class StartupError(RuntimeError):
    """Something unforeseen failed while the daemon started (broker, app, topics,
    consumer): one line saying which step and why; the traceback is logged at DEBUG."""

    @classmethod
    def of(cls, step: str, exc: BaseException) -> StartupError:
        """``cannot start (<step>): <Type>: <message>``, on one line (a KafkaException
        as its error's own text)."""
        error: Any = exc.args[0] if exc.args else None
        text = error.str() if callable(getattr(error, "str", None)) else str(exc)
        return cls(f"cannot start ({step}): {type(exc).__name__}: {' '.join(text.split())}")


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
