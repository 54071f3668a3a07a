"""Run a faust-streaming worker (``faust_peer_app``) against the test broker, and kill it.

Faust processes can hang on shutdown (``wait_empty``), so the worker gets SIGTERM, a
few seconds, then SIGKILL, and every wait here has a hard limit. Its log goes to a
file whose tail is shown when something fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

TESTS_DIR = Path(__file__).resolve().parent


class FaustWorker:
    """``with FaustWorker(bootstrap, topic, app_id, tmp_path): ...`` runs one worker."""

    def __init__(self, bootstrap: str, topic: str, app_id: str, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / "faust-worker.log"
        self.env = {**os.environ, "FAUST_PEER_BROKER": f"kafka://{bootstrap}",
                    "FAUST_PEER_APP": app_id, "FAUST_PEER_TOPIC": topic,
                    "FAUST_PEER_DATADIR": str(workdir / "faust-data"),
                    "PYTHONPATH": str(TESTS_DIR)}
        self.env.pop("AGENTD_BROKER", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FaustWorker:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "faust_peer_app", "worker", "-l", "info"],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        return self

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if exc is not None:
            sys.stderr.write(f"--- faust worker log (tail) ---\n{self.log_tail()}\n")
