"""sd_notify: datagrams to $NOTIFY_SOCKET, silent without it."""

from __future__ import annotations

import os
import socket
import time

import pytest

from supervisor.daemon.ops import notify
from supervisor.daemon.ops.notify import Notifier, watchdog_interval


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def _fields(sock):
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_stopping_status_watchdog_reach_the_socket(listener):
    sock, path = listener
    notifier = Notifier(path)
    assert notifier.ready(status="consuming")
    assert _fields(sock) == {"READY": "1", "STATUS": "consuming"}
    assert notifier.status("two\nlines")
    assert _fields(sock) == {"STATUS": "two lines"}
    assert notifier.watchdog()
    assert _fields(sock) == {"WATCHDOG": "1"}
    assert notifier.stopping()
    assert _fields(sock) == {"STOPPING": "1"}
    notifier.close()


def test_reloading_carries_current_monotonic_usec(listener):
    sock, path = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(path).reloading()
    fields = _fields(sock)
    assert fields["RELOADING"] == "1"
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_abstract_namespace_address_with_at_sign():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"agentd-test-{os.getpid()}-{time.monotonic_ns()}"
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier("@" + name).ready()
        assert _fields(sock) == {"READY": "1"}
    finally:
        sock.close()


def test_module_functions_use_environment_socket(listener, monkeypatch):
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setattr(notify, "_default", None)
    assert notify.ready()
    assert _fields(sock) == {"READY": "1"}
    assert notify.watchdog()
    assert _fields(sock) == {"WATCHDOG": "1"}


def test_without_notify_socket_every_call_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.stopping() is False


def test_unreachable_socket_is_reported_false_not_raised(tmp_path):
    assert Notifier(str(tmp_path / "nobody-listens")).ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None
