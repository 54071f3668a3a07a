"""Doorbells (eventfds) and peer watches (pidfds), on their own."""

from __future__ import annotations

import os
import subprocess
import sys

from supervisor.transport.doorbell import Doorbell, PeerWatch


def test_sleep_returns_rung_and_drains_so_the_next_sleep_times_out():
    bell = Doorbell.create()
    try:
        bell.ring()
        bell.ring()
        assert bell.sleep(-1, 5.0) == (True, False)
        assert bell.sleep(-1, 0.0) == (False, False)
    finally:
        bell.close()


def test_sleep_reports_a_dead_peer_instead_of_sleeping_on():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watch = PeerWatch(child.pid)
    bell = Doorbell.create()
    try:
        assert not watch.is_gone()
        assert bell.sleep(watch.fd, 0.0) == (False, False)
        child.kill()
        assert bell.sleep(watch.fd, 30.0) == (False, True)   # SIGKILL wakes the sleeper
        assert watch.is_gone()
    finally:
        child.wait()
        watch.close()
        bell.close()


def test_doorbell_and_watch_fds_are_not_inherited_and_close_idempotently():
    bell, watch = Doorbell.create(), PeerWatch(os.getpid())
    assert not os.get_inheritable(bell.fd)
    assert not os.get_inheritable(watch.fd)
    for _ in range(2):
        bell.close()
        watch.close()
    assert bell.fd == -1 and watch.fd == -1
