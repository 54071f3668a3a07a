"""The control socket's client: one command to a running daemon, its JSON reply.

The protocol and the server are ``supervisor/daemon/ops/control.py``; ``agentd
status|reload|stop`` reach the daemon through :func:`request`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from typing import Any

from supervisor.daemon.ops.control import ControlError, encode_line, socket_path

__all__ = ["request"]


def request(state_dir: str | os.PathLike[str], cmd: str, timeout: float = 5.0,
            **args: Any) -> dict[str, Any]:
    """Send one command to the daemon using ``state_dir``; return its JSON reply.

    Raises ``ControlError`` with a human sentence when no daemon answers.
    """
    path = socket_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(os.fspath(path))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                raise ControlError(f"agentd is not running (no daemon at {path})") from None
            raise ControlError(f"cannot connect to {path}: {exc.strerror}") from None
        # a refused peer is told why, then closed: the reason stays readable after EPIPE
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(encode_line({"cmd": cmd, **args}))
        reply = bytearray()
        while not reply.endswith(b"\n"):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            reply += chunk
    except TimeoutError:
        raise ControlError(f"agentd did not answer {cmd!r} within {timeout:g}s") from None
    except OSError as exc:
        raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not reply:
        raise ControlError(f"agentd closed the connection without answering {cmd!r}")
    try:
        answer = json.loads(reply)
    except ValueError:
        raise ControlError(f"agentd sent no valid reply to {cmd!r}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"agentd sent no valid reply to {cmd!r}")
    return answer
