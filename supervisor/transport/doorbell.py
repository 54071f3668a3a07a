"""Doorbells and peer watches: how one side of a ring sleeps without missing a wake-up.

A doorbell is an eventfd. The side that goes to sleep announces it in shared memory,
re-checks the ring, then sleeps in :meth:`Doorbell.sleep` on the doorbell and, when a
peer is watched, on that peer's pidfd. The other side writes the eventfd only when it
sees the announcement, so a busy ring costs no system call per message. The announce,
re-check and ring steps live in ``supervisor/transport/ring.py``; this module owns only the fds.

A pidfd becomes readable when its process exits, SIGKILL included, so a sleeper learns of
its peer's death at once instead of waiting forever on a doorbell nobody will ring.
"""

from __future__ import annotations

import contextlib
import os
import select

__all__ = ["Doorbell", "PeerGone", "PeerWatch"]

_ONE = (1).to_bytes(8, "little")


class PeerGone(RuntimeError):
    """The process on the other side of a ring has exited; nothing will ring again."""


class Doorbell:
    """One eventfd, non-blocking, close-on-exec; the fd can travel over SCM_RIGHTS."""

    __slots__ = ("_poller", "_poller_peer", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._poller: select.poll | None = None   # built on the first sleep, then reused
        self._poller_peer = -1

    @classmethod
    def create(cls) -> Doorbell:
        """A fresh eventfd with counter 0."""
        return cls(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))

    def ring(self) -> None:
        """Add one to the counter; a sleeper polling the fd wakes up.

        The counter cannot overflow in practice (2**64 - 2 rings without a drain), so
        the non-blocking write never fails with EAGAIN.
        """
        os.write(self.fd, _ONE)

    def drain(self) -> None:
        """Reset the counter to 0 so the next poll sleeps (no-op when already 0)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)

    def sleep(self, peer_fd: int, timeout: float) -> tuple[bool, bool]:
        """Sleep until this doorbell rings, the peer exits, or ``timeout`` seconds pass.

        Returns ``(rung, peer_gone)``. Drains the counter when it rang, so the next
        sleep blocks again. ``peer_fd`` is a pidfd, or -1 when no peer is watched. The
        timeout is the caller's safety net, never the wake-up mechanism.
        """
        poller = self._poller
        if poller is None or self._poller_peer != peer_fd:
            poller = self._poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            if peer_fd >= 0:
                poller.register(peer_fd, select.POLLIN)
            self._poller_peer = peer_fd
        rung = gone = False
        for fd, _mask in poller.poll(max(0, int(timeout * 1000 + 0.999))):
            if fd == self.fd:
                rung = True
            else:
                gone = True
        if rung:
            self.drain()
        return rung, gone

    def close(self) -> None:
        """Close the eventfd; idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._poller = None


class PeerWatch:
    """A pidfd on the peer process: readable once the peer has exited."""

    __slots__ = ("fd", "pid")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # pidfd_open works for any visible process, not only children, so the worker can
        # watch the supervisor (its parent's parent) as well as the reverse.
        self.fd = os.pidfd_open(pid)
        os.set_inheritable(self.fd, False)

    def is_gone(self) -> bool:
        """True once the peer has exited (zombie or reaped)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        """Close the pidfd; idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
