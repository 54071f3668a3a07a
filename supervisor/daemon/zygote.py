"""The daemon's handle on a zygote: start one, ask it to fork instances, hear their exits.

The zygote itself (``supervisor/instance/zygote.py``) is a fresh interpreter, started by
``exec``, that imports the app once and forks every instance; see there for why. The
two talk over the protocol in :mod:`supervisor.transport.forkserver`; this module is
the daemon's side of it and never imports instance code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.transport.flags import FLAGS_FD_ENV
from supervisor.transport.forkserver import MAX_PACKET as _MAX_PACKET
from supervisor.transport.forkserver import ZYGOTE_MODULE

__all__ = ["AgentSpec", "Zygote", "ZygoteError"]

log = logging.getLogger("agentd.zygote")


class ZygoteError(RuntimeError):
    """The zygote could not import the app, or stopped answering."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.detail = detail  # the import's traceback, when there was one


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What the supervisor needs to know about one agent of the imported app."""

    name: str
    topics: tuple[str, ...]
    concurrency: int
    app: str
    #: declared partition counts of the topics agentd creates for it (its own,
    #: group_by/through, sinks with ``partitions=``); others get the default
    partitions: Mapping[str, int] = field(default_factory=dict)
    #: the tables its code uses: ``{"name", "changelog", "partitions", "global"}``
    tables: tuple[Mapping[str, Any], ...] = ()
    #: its app's ``processing_guarantee`` (Faust's setting), None if not set
    guarantee: str | None = None
    #: the in-process channels it reads (``app.channel()``): their messages come
    #: from other instances through the supervisor, not from Kafka
    channels: tuple[str, ...] = ()
    #: its app has ``on_leader=True`` tasks or timers (the daemon joins the election)
    leader_work: bool = False
    #: how many messages of its channel may wait for one of its instances (Faust's
    #: ``app.channel(maxsize=)``, else the app's ``stream_buffer_maxsize``), if set
    channel_maxsize: int | None = None


class Zygote:
    """The supervisor's handle on one zygote process."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket,
                 agents: list[AgentSpec], app_ids: list[str]) -> None:
        self.proc = proc
        self.sock = sock
        self.agents = agents
        self.app_ids = app_ids
        self._events: deque[dict[str, Any]] = deque()
        self._next_request = 0

    @classmethod
    def start(cls, apps: list[str], env: dict[str, str], timeout: float = 60.0) -> Zygote:
        """Exec a zygote, wait until it imported ``apps``; raise :class:`ZygoteError`
        with its one-line reason if it could not."""
        proc, ours = cls.exec(apps, env)
        ready, _, _ = select.select([ours], [], [], timeout)
        packet = ours.recv(_MAX_PACKET) if ready else b""
        try:
            return cls.from_report(proc, ours, packet)
        except ZygoteError as exc:
            if exc.detail:
                log.debug("app import traceback:\n%s", exc.detail)
            raise

    @staticmethod
    def exec(apps: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes],
                                                             socket.socket]:
        """A new zygote process importing ``apps``, and the daemon's end of its socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [sys.executable, "-m", ZYGOTE_MODULE, str(theirs.fileno()), *apps]
        inherited = [int(env[FLAGS_FD_ENV])] if FLAGS_FD_ENV in env else []
        proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno(), *inherited], env=env)
        theirs.close()
        return proc, ours

    @classmethod
    def from_report(cls, proc: subprocess.Popen[bytes], sock: socket.socket,
                    packet: bytes) -> Zygote:
        """The handle, from the zygote's first packet (``ready``); anything else (or
        nothing: it exited) closes the socket, reaps the process and raises
        :class:`ZygoteError` with the zygote's reason and traceback."""
        message: dict[str, Any] = json.loads(packet) if packet else {
            "op": "failed", "reason": "the zygote exited before reporting its agents"}
        if message.get("op") != "ready":
            sock.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            raise ZygoteError(message.get("reason", "the zygote failed"),
                              message.get("traceback"))
        agents = [AgentSpec(a["name"], tuple(a["topics"]), int(a["concurrency"]), a["app"],
                            {str(t): int(n) for t, n in (a.get("partitions") or {}).items()},
                            tuple(a.get("tables") or ()), a.get("guarantee"),
                            tuple(a.get("channels") or ()), bool(a.get("leader_work")),
                            a.get("channel_maxsize"))
                  for a in message["agents"]]
        return cls(proc, sock, agents, list(message.get("app_ids") or ["agentd"]))

    def fileno(self) -> int:
        return self.sock.fileno()

    def fork(self, agent: str, settings: dict[str, Any], fds: list[int],
             timeout: float = 30.0) -> int:
        """Fork one instance of ``agent`` attached to the rings behind ``fds``; its pid.

        Blocks until the zygote answers (a fork takes milliseconds); ``exited``
        reports that arrive meanwhile are kept for :meth:`take_exits`.
        """
        self._next_request += 1
        request = {"op": "fork", "id": self._next_request, "agent": agent,
                   "settings": settings}
        socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.sock], [], [], max(0.0, left))
            if not ready:
                raise ZygoteError(f"no answer to a fork request after {timeout} s")
            message = self._receive()
            if message["op"] == "forked" and message["id"] == self._next_request:
                return int(message["pid"])
            if message["op"] == "fork_failed":
                raise ZygoteError(message["reason"])
            self._events.append(message)

    def take_exits(self) -> list[tuple[int, int]]:
        """``(pid, wait status)`` of every instance the zygote reaped since last asked
        (non-blocking; call when :meth:`fileno` is readable or at any time)."""
        while True:
            ready, _, _ = select.select([self.sock], [], [], 0)
            if not ready:
                break
            self._events.append(self._receive())
        exits = [(int(m["pid"]), int(m["status"])) for m in self._events
                 if m["op"] == "exited"]
        self._events.clear()
        return exits

    def _receive(self) -> dict[str, Any]:
        packet = self.sock.recv(_MAX_PACKET)
        if not packet:
            raise ZygoteError("the zygote exited")
        message: dict[str, Any] = json.loads(packet)
        return message

    def stop(self, timeout: float = 5.0) -> None:
        """Close the socket (the zygote exits on EOF; its children get SIGKILL with it)."""
        self.sock.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
