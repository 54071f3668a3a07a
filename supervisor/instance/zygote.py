"""The zygote: a fresh interpreter that imports the app once and forks agent instances.

Why exec and then fork: the supervisor holds a librdkafka consumer whose threads would
not survive ``fork()`` (and whose locks might be held at that instant). The zygote is
started by ``exec`` (``python -m supervisor.instance.zygote FD``), so it inherits no threads; it
imports the user's modules once, and every instance is then a ``fork()`` of it that
shares that imported code copy-on-write and starts in milliseconds.

This is the zygote's side (:func:`serve`); the daemon's handle is
``supervisor/daemon/zygote.py``. They talk over a ``SOCK_SEQPACKET`` socketpair, one JSON object per
packet; ring fds travel with a fork request as ``SCM_RIGHTS``. Zygote → supervisor:
``ready`` (the agents), ``failed`` (the app would not import), ``forked`` (pid),
``exited`` (pid, wait status). Supervisor → zygote: ``fork``.

Every process here dies with its parent (``PR_SET_PDEATHSIG``): the zygote with the
supervisor, a worker with the zygote. Workers leave with ``os._exit``.

The imported heap is frozen out of the cyclic GC (``gc.freeze``) before every fork:
an instance's full collections then walk only what the instance itself made, not
the app's modules (measured: a full collection over the ask bench's imports takes
3-5 ms, over a Faust app's 12-18 ms, and ~0 once frozen, and each was a pause of
every record in flight), and the collector never writes to those objects' GC
headers, so their pages stay shared with the zygote instead of being copied.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from supervisor.transport.forkserver import MAX_PACKET as _MAX_PACKET

__all__ = ["find_agents", "freeze_heap", "load_app", "serve", "set_parent_death_signal"]

log = logging.getLogger("agentd.zygote")

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def load_app(spec: str) -> Any:
    """``"module:attr"`` → that object; ``"module"`` → the one agentlib App in it."""
    app_type = importlib.import_module("agentlib").App
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    apps = [value for value in vars(module).values() if isinstance(value, app_type)]
    if len(apps) != 1:
        raise LookupError(f"module {module_name!r} defines {len(apps)} agentlib Apps; "
                          f"name one as '{module_name}:ATTR'")
    return apps[0]


def find_agents(apps: list[Any]) -> dict[str, Any]:
    """Every agent of ``apps`` by its full name (``module.function``)."""
    agents: dict[str, Any] = {}
    for app in apps:
        for name, agent in dict(app.agents).items():
            agents[str(name)] = agent
    return agents


def _describe(agents: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "topics": list(agent.topic_names()),
             "partitions": dict(getattr(agent, "topic_partitions", dict)()),
             "concurrency": int(getattr(agent, "concurrency", 1) or 1),
             "app": _app_id(agent.app), "tables": _tables_of(agent),
             "guarantee": _guarantee_of(agent.app), "channels": _channels_of(agent),
             "channel_maxsize": _channel_maxsize(agent),
             "leader_work": _has_leader_work(agent.app)}
            for name, agent in agents.items()]


def _tables_of(agent: Any) -> list[dict[str, Any]]:
    """The tables the agent's code refers to: name, changelog topic, partitions."""
    try:
        from agentlib.tables.usage import tables_used_by
    except ImportError:  # not an agentlib agent
        return []
    return [{"name": table.name, "changelog": table.changelog_topic_name,
             "partitions": table.partitions, "global": table.is_global,
             "store": table.store}
            for table in tables_used_by(getattr(agent, "fun", None))]


def _has_leader_work(app: Any) -> bool:
    """Whether the app has ``on_leader=True`` tasks, timers or crontabs (then agentd
    elects)."""
    scheduled = [*getattr(app, "timers", ()), *getattr(app, "crontabs", ())]
    return bool(getattr(app, "leader_tasks", None)) or any(
        getattr(each, "on_leader", False) for each in scheduled)


def _channels_of(agent: Any) -> list[str]:
    """The in-process channel the agent reads (``app.channel()``), if it reads one."""
    from agentlib.topics import Channel
    channel = getattr(agent, "channel", None)
    return [channel.get_topic_name()] if isinstance(channel, Channel) else []


def _channel_maxsize(agent: Any) -> int | None:
    """How many messages of the agent's channel may wait for one of its instances:
    Faust's ``app.channel(maxsize=)``, else its app's ``stream_buffer_maxsize``."""
    size = getattr(getattr(agent, "channel", None), "maxsize", None)
    if size is None:
        conf = getattr(agent.app, "conf", None)
        size = conf.get("stream_buffer_maxsize") if isinstance(conf, dict) else None
    return int(size) if size else None


def _guarantee_of(app: Any) -> str | None:
    """The app's ``processing_guarantee`` (``App(processing_guarantee=...)``), if set."""
    conf = getattr(app, "conf", None)
    value = conf.get("processing_guarantee") if isinstance(conf, dict) else None
    return str(getattr(value, "value", value)) if value is not None else None


def _app_id(app: Any) -> str:
    """Faust keeps the id as ``app.conf.id``; accept a plain ``app.id`` as well."""
    conf = getattr(app, "conf", None)
    return str(getattr(conf, "id", None) or getattr(app, "id", None) or "agentd")


def serve(fd: int, specs: list[str]) -> int:
    """The zygote's main: import, report, then fork on request until the socket closes.

    SIGINT and SIGTERM are ignored: a Ctrl-C or a unit stop reaches the whole process
    group, and only the supervisor decides how its instances stop (it closes our
    socket; if it dies instead, PR_SET_PDEATHSIG ends us).
    """
    set_parent_death_signal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    try:
        apps = [load_app(spec) for spec in specs]
        agents = find_agents(apps)
        gc.collect()  # the import's garbage goes now, not frozen with the rest
        freeze_heap()
    except BaseException as exc:  # any import-time failure is the user's to read
        reason = f"cannot import app {' '.join(specs)}: {type(exc).__name__}: {exc}"
        sock.send(json.dumps({"op": "failed", "reason": reason,
                              "traceback": traceback.format_exc()}).encode())
        return 1
    sock.send(json.dumps({"op": "ready", "agents": _describe(agents),
                          "app_ids": [_app_id(app) for app in apps]}).encode())
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    while True:
        ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _report_exits(sock)
        if sock.fileno() in ready:
            try:
                packet, fds, _, _ = socket.recv_fds(sock, _MAX_PACKET, 64)
            except ConnectionResetError:
                # The supervisor closed its end with our exit reports still unread (a
                # retired zygote after a reload): the same goodbye as EOF, not a crash.
                return 0
            if not packet:
                return 0
            request = json.loads(packet)
            try:
                pid = _fork_instance(sock, (wake_r, wake_w), agents[request["agent"]],
                                     request["settings"], fds)
            except Exception as exc:
                sock.send(json.dumps({"op": "fork_failed", "id": request["id"],
                                      "reason": f"{type(exc).__name__}: {exc}"}).encode())
            else:
                sock.send(json.dumps({"op": "forked", "id": request["id"],
                                      "pid": pid}).encode())
            finally:
                for received in fds:
                    os.close(received)


def freeze_heap() -> None:
    """Move every object tracked by the cyclic GC to its permanent generation.

    Called in the zygote before forking: the instance inherits that heap frozen, so
    its collections (gen 2 included) skip the app's imported objects. The zygote's
    own later garbage is freed by reference counting; only cycles would stay.
    """
    gc.freeze()


def _report_exits(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        try:
            sock.send(json.dumps({"op": "exited", "pid": pid, "status": status}).encode())
        except (BrokenPipeError, ConnectionResetError):
            return  # the supervisor is gone: serve() sees the closed socket next


def _fork_instance(sock: socket.socket, wake: tuple[int, int], agent: Any,
                   settings: dict[str, Any], fds: list[int]) -> int:
    zygote_pid = os.getpid()
    freeze_heap()  # what the zygote made since the last fork: a few small objects
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        set_parent_death_signal()
        if os.getppid() != zygote_pid:  # the zygote died before prctl took effect
            os._exit(code)
        sock.close()
        for end in wake:
            os.close(end)
        from supervisor.instance import worker

        code = worker.run(agent, fds, settings)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=os.environ.get("AGENTD_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    return serve(int(argv[1]), argv[2:])


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
