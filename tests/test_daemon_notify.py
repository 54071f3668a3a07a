"""``agentd start`` speaks sd_notify as systemd's Type=notify expects: a fake
``NOTIFY_SOCKET`` (a datagram socket owned by the test) receives READY=1 once the
daemon consumes, STATUS= lines, WATCHDOG=1 repeatedly at half of WATCHDOG_USEC,
RELOADING=1 with MONOTONIC_USEC then READY=1 around a reload, and STOPPING=1 on
SIGTERM, in that order. Real Kafka, real subprocess."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import kafkatools
import pytest
from agentdproc import AGENTD, Agentd

pytestmark = pytest.mark.kafka


class NotifyListener:
    """Collects every datagram as a dict of its ``KEY=VALUE`` lines, in order."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: list[dict[str, str]] = []

    def wait_for(self, predicate, timeout: float, what: str) -> dict[str, str]:
        """Read datagrams until one satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.split("\n") if line)
            self.messages.append(message)
            if predicate(message):
                return message
        raise AssertionError(f"no {what} within {timeout}s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


def test_ready_status_watchdog_reloading_stopping_sequence(kafka_bootstrap, tmp_path):
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    settings = {"app": "examples.agent", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("notify"), "shutdown_timeout": "20s"}
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    try:
        with Agentd(tmp_path, settings, env=env) as daemon:
            listener.wait_for(lambda m: m.get("READY") == "1", 90, "READY=1")
            ready_at = len(listener.messages)
            for _ in range(3):  # every 0.2 s: three in a row come within seconds
                listener.wait_for(lambda m: m.get("WATCHDOG") == "1", 10, "WATCHDOG=1")
            listener.wait_for(lambda m: "STATUS" in m and "instances" in m["STATUS"], 10,
                              "a STATUS= line with the instance count")

            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            done = subprocess.run([*AGENTD, "-c", str(daemon.config), "reload"],
                                  cwd=tmp_path, env=daemon.env, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            reloading = listener.wait_for(lambda m: m.get("RELOADING") == "1", 30,
                                          "RELOADING=1")
            assert int(reloading["MONOTONIC_USEC"]) >= before
            reload_at = len(listener.messages)
            listener.wait_for(lambda m: m.get("READY") == "1", 90, "READY=1 after reload")
            status = json.loads(subprocess.run(
                [*AGENTD, "-c", str(daemon.config), "status", "--json"], cwd=tmp_path,
                env=daemon.env, capture_output=True, text=True, timeout=60).stdout)
            assert status["reload"]["reloads"] == 1 and status["reload"]["state"] == "idle"

            daemon.proc.send_signal(signal.SIGTERM)
            stopping_msg = listener.wait_for(lambda m: m.get("STOPPING") == "1", 30,
                                             "STOPPING=1")
            assert daemon.proc.wait(60) == 0
    finally:
        listener.close()
    kinds = [next(iter(m)) for m in listener.messages]
    assert kinds.index("READY") < ready_at <= kinds.index("RELOADING") < reload_at
    assert "WATCHDOG" in kinds[ready_at:reload_at]
    assert listener.messages.index(stopping_msg) > reload_at
    assert all("READY" not in m for m in listener.messages[ready_at:reload_at - 1])
