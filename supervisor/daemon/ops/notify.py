"""sd_notify(3) with the standard library: tell systemd (Type=notify) what the daemon does.

No libsystemd binding: the protocol is one datagram of ``KEY=VALUE`` lines to the
``AF_UNIX`` socket named in ``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux
abstract namespace). Without ``$NOTIFY_SOCKET`` (run from a terminal) every call is a
no-op, so the daemon calls these unconditionally. A send that fails is logged once and
otherwise ignored: systemd being away must never stop agents from processing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """One connection-less sender; cheap to keep for the daemon's lifetime."""

    def __init__(self, address: str | None = None) -> None:
        """``address`` defaults to ``$NOTIFY_SOCKET``; None/empty disables notifying."""
        raw = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address: str | None = None
        if raw:
            self.address = "\0" + raw[1:] if raw.startswith("@") else raw
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when a notify socket is configured (running under systemd Type=notify)."""
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (keyword names upper-cased); True if delivered."""
        if self.address is None:
            return False
        lines = [f"{key.upper()}={value}" for key, value in fields.items()]
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %r failed: %s", self.address.lstrip("\0"), exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: the daemon consumes (sent after start and after a reload)."""
        return self.send(ready=1, **({"status": status} if status else {}))

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (required by Type=notify-reload, and
        lets systemd time the reload); follow with ``ready()`` when it is done."""
        return self.send(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                         // 1000)

    def stopping(self) -> bool:
        """``STOPPING=1``: draining for shutdown."""
        return self.send(stopping=1)

    def status(self, text: str) -> bool:
        """``STATUS=<text>``, shown by ``systemctl status`` (one line)."""
        return self.send(status=" ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the loop is alive; send every ``watchdog_interval()`` seconds."""
        return self.send(watchdog=1)

    def close(self) -> None:
        """Close the socket (a forked child should not inherit the use of it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, or None.

    Honours ``$WATCHDOG_PID``: when it is set to another process the watchdog is not ours.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None


_default: Notifier | None = None


def _notifier() -> Notifier:
    """The process-wide notifier on ``$NOTIFY_SOCKET`` (read on first use)."""
    global _default
    if _default is None:
        _default = Notifier()
    return _default


def ready(status: str | None = None) -> bool:
    """Module-level ``Notifier().ready`` on ``$NOTIFY_SOCKET``."""
    return _notifier().ready(status)


def reloading() -> bool:
    """Module-level ``Notifier().reloading`` on ``$NOTIFY_SOCKET``."""
    return _notifier().reloading()


def stopping() -> bool:
    """Module-level ``Notifier().stopping`` on ``$NOTIFY_SOCKET``."""
    return _notifier().stopping()


def status(text: str) -> bool:
    """Module-level ``Notifier().status`` on ``$NOTIFY_SOCKET``."""
    return _notifier().status(text)


def watchdog() -> bool:
    """Module-level ``Notifier().watchdog`` on ``$NOTIFY_SOCKET``."""
    return _notifier().watchdog()
