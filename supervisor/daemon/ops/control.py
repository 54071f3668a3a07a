"""The control socket: ``agentd status|reload|stop`` talking to a running daemon.

A Unix stream socket ``<state_dir>/control.sock`` (mode 0600, in a directory of mode
0700 owned by the daemon's user). Protocol: one JSON object per line, ``{"cmd":
"status"}``; one JSON object per line back, always with ``"ok"`` (true, or false with
``"error"``). File modes already keep other users out; on top of that every connection
is checked with ``SO_PEERCRED`` and only the daemon's own uid is served. Root is not an
exception: root can bypass file modes, so the peer check is what keeps the socket
owner-only; an operator runs ``sudo -u agentd agentd status`` (docs/operations.md).

The server never blocks and never starts a thread: the daemon's single loop watches
``fileno()`` (an epoll fd, readable whenever a client needs attention) and calls
``poll_once(handler)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
COMMANDS = ("status", "reload", "stop")
MAX_LINE = 64 * 1024
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
Handler = Callable[[dict[str, Any]], Mapping[str, Any]]


class ControlError(Exception):
    """The control socket cannot be served or reached; the message is for a human."""


def socket_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where the daemon using ``state_dir`` listens."""
    return Path(state_dir) / SOCKET_NAME


def prepare_state_dir(state_dir: str | os.PathLike[str]) -> Path:
    """Create ``state_dir`` 0700 (parents as needed) and refuse one we do not own."""
    path = Path(state_dir)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise ControlError(f"cannot create state_dir {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"state_dir {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise ControlError(f"state_dir {path} belongs to uid {info.st_uid}, not to this user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


class _Client:
    __slots__ = ("inbox", "outbox", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = bytearray()


class ControlServer:
    """Listening socket plus its clients, all non-blocking, driven by ``poll_once``."""

    def __init__(self, state_dir: str | os.PathLike[str], *,
                 allowed_uids: Iterable[int] | None = None,
                 commands: Iterable[str] = COMMANDS) -> None:
        """Bind ``<state_dir>/control.sock``; ``allowed_uids`` defaults to our euid."""
        self.path = socket_path(prepare_state_dir(state_dir))
        if len(os.fsencode(self.path)) >= 108:
            raise ControlError(f"control socket path {self.path} is too long for AF_UNIX; "
                               "set a shorter state_dir")
        self.allowed_uids = frozenset(allowed_uids if allowed_uids is not None
                                      else (os.geteuid(),))
        self.commands = tuple(commands)
        self._remove_stale_socket()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window with wider modes
        try:
            self._listener.bind(os.fspath(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)

    def fileno(self) -> int:
        """An fd that is readable whenever ``poll_once`` has work (register it in the loop)."""
        return self._selector.fileno()

    def poll_once(self, handler: Handler, timeout: float = 0.0) -> int:
        """Accept, read, answer and write whatever is ready; returns requests handled.

        ``handler(request)`` runs in the caller's thread and should be quick; its
        exceptions become ``{"ok": false, "error": ...}`` replies, never escape.
        """
        handled = 0
        for key, events in self._selector.select(timeout):
            if key.data is None:
                self._accept_all()
                continue
            client: _Client = key.data
            if events & selectors.EVENT_READ:
                handled += self._read(client, handler)
            if events & selectors.EVENT_WRITE or client.outbox:
                self._flush(client)
        return handled

    def close(self) -> None:
        """Close every connection and remove the socket file."""
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                key.data.sock.close()
        self._selector.close()
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # ---- internals ----

    def _remove_stale_socket(self) -> None:
        """A socket file left by a dead daemon is removed; a live daemon is an error."""
        if not os.path.lexists(self.path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(self.path))
        except OSError:
            os.unlink(self.path)
        else:
            raise ControlError(f"another agentd is already listening on {self.path}")
        finally:
            probe.close()

    def _accept_all(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            pid, uid, _gid = _UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            if uid not in self.allowed_uids:
                log.warning("control socket: refused pid %d uid %d", pid, uid)
                _send_refusal(sock, uid)
                continue
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, _Client(sock))

    def _read(self, client: _Client, handler: Handler) -> int:
        try:
            chunk = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(client)
            return 0
        client.inbox += chunk
        handled = 0
        while b"\n" in client.inbox:
            line, _, rest = bytes(client.inbox).partition(b"\n")
            client.inbox = bytearray(rest)
            client.outbox += encode_line(self._answer(line, handler))
            handled += 1
        if len(client.inbox) > MAX_LINE:
            client.outbox += encode_line({"ok": False, "error": "request line too long"})
            client.inbox.clear()
        return handled

    def _answer(self, line: bytes, handler: Handler) -> Mapping[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'request must be an object with a "cmd" string'}
        if request["cmd"] not in self.commands:
            return {"ok": False, "error": f"unknown command {request['cmd']!r}; "
                                          f"known: {', '.join(self.commands)}"}
        try:
            reply = dict(handler(request))
        except Exception as exc:  # the daemon must outlive a bad handler call
            log.exception("control command %r failed", request["cmd"])
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply.setdefault("ok", True)
        return reply

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        del client.outbox[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        self._selector.modify(client.sock, events, client)

    def _drop(self, client: _Client) -> None:
        self._selector.unregister(client.sock)
        client.sock.close()


def encode_line(reply: Mapping[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":"), default=str).encode() + b"\n"


def _send_refusal(sock: socket.socket, uid: int) -> None:
    """Best effort one-line reason, then close: a refused user learns why."""
    try:
        sock.setblocking(False)
        sock.send(encode_line({"ok": False, "error": f"uid {uid} may not use this control "
                                                 f"socket; run as uid {os.geteuid()}"}))
    except OSError:
        pass
    finally:
        sock.close()
