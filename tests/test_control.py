"""Control socket: owner-only modes, SO_PEERCRED refusal, JSON round trips."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import tempfile
import threading

import pytest

from supervisor.cli.control_client import request
from supervisor.daemon.ops.control import ControlError, ControlServer, socket_path


def _serve_while(server, handler, work):
    """Run ``work()`` in a thread while this thread polls the server (as the daemon does)."""
    result = {}

    def run():
        try:
            result["value"] = work()
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    while thread.is_alive():
        server.poll_once(handler, timeout=0.05)
        thread.join(0)
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture
def server(tmp_path):
    srv = ControlServer(tmp_path / "state")
    yield srv
    srv.close()


def test_state_dir_is_0700_and_socket_is_0600(server, tmp_path):
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    info = os.stat(socket_path(tmp_path / "state"))
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600


def test_existing_state_dir_with_wide_mode_is_tightened(tmp_path):
    (tmp_path / "wide").mkdir(mode=0o755)
    os.chmod(tmp_path / "wide", 0o755)
    srv = ControlServer(tmp_path / "wide")
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "wide").st_mode) == 0o700
    finally:
        srv.close()


def test_status_round_trip(server, tmp_path):
    seen = []

    def handler(req):
        seen.append(req)
        return {"instances": [{"agent": "adding", "pid": 1}]}

    reply = _serve_while(server, handler, lambda: request(tmp_path / "state", "status"))
    assert reply == {"ok": True, "instances": [{"agent": "adding", "pid": 1}]}
    assert seen == [{"cmd": "status"}]


def test_unknown_command_and_failing_handler_get_error_replies(server, tmp_path):
    def handler(req):
        raise RuntimeError("boom")

    state = tmp_path / "state"
    assert "unknown command" in _serve_while(server, handler,
                                             lambda: request(state, "explode"))["error"]
    reply = _serve_while(server, handler, lambda: request(state, "reload"))
    assert reply == {"ok": False, "error": "RuntimeError: boom"}


def test_garbage_line_gets_an_error_and_the_server_keeps_serving(server, tmp_path):
    def talk():
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(os.fspath(socket_path(tmp_path / "state")))
            sock.sendall(b"not json\n[1]\n")
            data = b""
            while data.count(b"\n") < 2:
                data += sock.recv(4096)
            return data

    lines = _serve_while(server, lambda req: {}, talk).splitlines()
    assert b"not JSON" in lines[0] and b"cmd" in lines[1]
    assert _serve_while(server, lambda req: {}, lambda: request(tmp_path / "state", "stop"))["ok"]


def test_peer_with_another_uid_is_refused_by_peercred(tmp_path):
    srv = ControlServer(tmp_path / "s2", allowed_uids={os.geteuid() + 1})
    try:
        reply = _serve_while(srv, lambda req: {"leak": True},
                             lambda: request(tmp_path / "s2", "status"))
    finally:
        srv.close()
    assert reply["ok"] is False and "may not use" in reply["error"]


def test_forked_child_running_as_nobody_is_refused(server, tmp_path):
    assert os.geteuid() == 0, "dropping to nobody needs root (the CI runs as root)"
    nobody = pwd.getpwnam("nobody")
    state = tmp_path / "state"
    os.chmod(tmp_path, 0o755)
    pid = os.fork()
    if pid == 0:  # child: drop to nobody and try every way in
        code = 3
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                reply = request(state, "status", timeout=5)
                code = 0 if reply.get("ok") is False else 1
            except ControlError:
                code = 0  # the 0700 directory stopped it before connect
        finally:
            os._exit(code)
    status = None
    while status is None:
        server.poll_once(lambda req: {"leak": True}, timeout=0.05)
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
    assert status == 0


def test_forked_nobody_is_refused_even_when_file_modes_are_loosened():
    assert os.geteuid() == 0, "dropping to nobody needs root (the CI runs as root)"
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="agentd-ctl-")  # pytest's tmp root is 0700: use /tmp
    state = os.path.join(base, "state")
    srv = ControlServer(state)
    try:
        os.chmod(base, 0o755)
        os.chmod(state, 0o755)
        os.chmod(socket_path(state), 0o666)  # only SO_PEERCRED stands in the way now
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                reply = request(state, "status", timeout=5)
                code = 0 if reply.get("ok") is False and "leak" not in reply else 1
            finally:
                os._exit(code)
        status = None
        while status is None:
            srv.poll_once(lambda req: {"leak": True}, timeout=0.05)
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(raw)
        assert status == 0
    finally:
        srv.close()
        shutil.rmtree(base)


def test_second_server_on_same_state_dir_is_refused(server, tmp_path):
    with pytest.raises(ControlError, match="already listening"):
        ControlServer(tmp_path / "state")


def test_stale_socket_from_dead_daemon_is_replaced(tmp_path):
    first = ControlServer(tmp_path / "state")
    first._listener.close()  # as if the process died without cleaning up
    second = ControlServer(tmp_path / "state")
    try:
        reply = _serve_while(second, lambda req: {}, lambda: request(tmp_path / "state", "status"))
        assert reply["ok"] is True
    finally:
        second.close()
        first._selector.close()


def test_client_without_daemon_gets_a_sentence(tmp_path):
    with pytest.raises(ControlError, match="not running"):
        request(tmp_path, "status", timeout=1)
