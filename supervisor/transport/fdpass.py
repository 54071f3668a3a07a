"""Hand a ring to a process that inherited nothing: its fds over a Unix socket.

The zygote is an exec'd interpreter, so the supervisor cannot rely on fork inheritance;
it sends each ring's ``[memfd, data-ready eventfd, space-ready eventfd]`` with
SCM_RIGHTS (``socket.send_fds``). The kernel installs fresh fds in the receiver that
refer to the same memfd and eventfds, so both processes map the same pages and ring the
same doorbells.
"""

from __future__ import annotations

import os
import socket

from supervisor.transport.ring import Ring

__all__ = ["receive_ring", "send_ring"]

_TAG = b"agentd-ring"


def send_ring(sock: socket.socket, ring: Ring) -> None:
    """Send ``ring``'s fds as one message on a connected ``AF_UNIX`` socket.

    The sender keeps its own fds open; both sides close their ring independently.
    """
    socket.send_fds(sock, [_TAG], ring.fds())


def receive_ring(sock: socket.socket) -> Ring:
    """Receive one ring sent with :func:`send_ring` and attach to it (owning its fds).

    Raises ConnectionError (closing whatever fds arrived) when the message is not a ring,
    e.g. when the peer closed the socket.
    """
    message, fds, _flags, _address = socket.recv_fds(sock, len(_TAG), 3)
    if message != _TAG or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"expected a ring's 3 fds, got {message!r} with {len(fds)} fds")
    return Ring.attach(fds)
