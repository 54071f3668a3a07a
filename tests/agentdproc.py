"""Run ``agentd start`` as a subprocess for a test: config and agent module in tmp_path.

Every wait has a hard limit and every process started here is killed on the way out
(SIGTERM to the supervisor, then SIGKILL to its whole process group), so a hung
daemon fails its test instead of hanging the suite. The supervisor's stderr goes to a
file whose tail is printed when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import kafkatools
import psutil
from agentsrc import agent_module

REPO = Path(__file__).resolve().parent.parent
AGENTD = [sys.executable, str(REPO / "bin" / "agentd")]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, settings: dict[str, Any],
                 agents: dict[str, dict[str, Any]] | None = None,
                 kafka: dict[str, Any] | None = None) -> Path:
    """A TOML config: top-level ``settings``, ``[kafka]`` and ``[agents."name"]`` tables."""
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    if kafka:
        lines.append("[kafka]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in kafka.items()]
    for name, table in (agents or {}).items():
        lines.append(f"[agents.{json.dumps(name)}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.2) -> Any:
    """Poll ``predicate`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` (none once it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still running (a zombie counts as dead)."""
    living = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                living.append(proc)
        except psutil.NoSuchProcess:
            pass
    return living


#: An agent module that relays raw values from ``$IN_TOPIC`` to ``$SINK_TOPIC`` and
#: kills its own instance (SIGKILL) on every ``b"poison"`` value.
POISON_AGENT = agent_module("poison-app", "guarded", """
    if value == b"poison":
        os.kill(os.getpid(), 9)   # dies on it, every time
    yield value
""")


class Agentd:
    """``with Agentd(tmp_path, settings, agents, module_source) as daemon: ...``."""

    def __init__(self, workdir: Path, settings: dict[str, Any], *,
                 agents: dict[str, dict[str, Any]] | None = None,
                 modules: dict[str, str] | None = None,
                 kafka: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        for name, source in (modules or {}).items():
            (workdir / f"{name}.py").write_text(textwrap.dedent(source))
        settings = {"state_dir": str(workdir / "state"), **settings}
        self.config = write_config(workdir / "agentd.toml", settings, agents, kafka)
        self.log_path = workdir / "agentd.log"
        self.out_path = workdir / "agentd.out"
        self.env = {**os.environ, **(env or {}),
                    "PYTHONPATH": os.pathsep.join([str(workdir), str(REPO)])}
        self.env.pop("AGENTD_BROKER", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Agentd:
        self.start()
        return self

    def start(self) -> None:
        with self.log_path.open("ab") as err, self.out_path.open("ab") as out:
            self.proc = subprocess.Popen([*AGENTD, "start", str(self.config)],
                                         cwd=self.workdir, env=self.env, stdout=out,
                                         stderr=err, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def wait_consuming(self, timeout: float = 60.0) -> None:
        """Until the consumer subscribed and every instance started (or it died)."""
        def ready() -> bool:
            self.assert_running()
            return "partitions" in self.log() and "assigned" in self.log()
        wait_until(ready, timeout, "agentd to get its partitions")

    def assert_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agentd exited {self.proc.returncode}:\n{self.log()[-4000:]}")

    def instance_pids(self) -> list[int]:
        """Pids of the agent instances: the zygote's children."""
        assert self.proc is not None
        try:
            supervisor = psutil.Process(self.proc.pid)
            zygotes = supervisor.children()
        except psutil.NoSuchProcess:
            return []
        pids: list[int] = []
        for zygote in zygotes:
            with contextlib.suppress(psutil.NoSuchProcess):
                pids.extend(child.pid for child in zygote.children())
        return sorted(pids)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM; the exit code (SIGKILL to the group if it does not exit in time)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"agentd ignored SIGTERM for {timeout}s:\n"
                                     f"{self.log()[-4000:]}") from None
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if self.proc is not None:
            # Children of a killed supervisor die with it (PR_SET_PDEATHSIG); make sure.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if exc is not None:
            sys.stderr.write(f"--- agentd log (tail) ---\n{self.log()[-6000:]}\n")


def wait_committed(daemon: Agentd, bootstrap: str, group: str, topic: str, timeout: float,
                   what: str, interval: float = 0.2) -> None:
    """Until ``group`` committed ``topic`` to its end; fails at once if agentd exited."""
    wait_until(lambda: daemon.assert_running() or
               kafkatools.committed_equals_end(bootstrap, group, topic),
               timeout, what, interval=interval)


def drain_and_stop(daemon: Agentd, bootstrap: str, group: str, source: str) -> None:
    """Wait until everything in ``source`` is committed, then SIGTERM: exit code 0."""
    wait_committed(daemon, bootstrap, group, source, 120, "committed offsets to reach the end",
                   interval=0.5)
    assert daemon.stop() == 0, daemon.log()[-3000:]
