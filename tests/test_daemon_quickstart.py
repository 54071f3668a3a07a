"""The README's first command: ``agentd start examples/quickstart.toml`` prints sums
within seconds (embedded broker, 2 instances of the seed's ``adding`` agent), and
stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time

from agentdproc import AGENTD, REPO


def test_quickstart_prints_results_and_stops_cleanly_on_ctrl_c():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("AGENTD_BROKER", None)
    proc = subprocess.Popen([*AGENTD, "start", "examples/quickstart.toml"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    sums: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while len(sums) < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                if re.fullmatch(r"\d+ \+ \d+ = \d+\n", line):
                    sums.append(line)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert len(sums) == 3, f"no results printed; stderr:\n{stderr[-3000:]}"
    for line in sums:
        a, b, total = map(int, re.findall(r"\d+", line))
        assert a + b == total
    assert "embedded broker" in stderr and "bootstrap=127.0.0.1:" in stderr
    assert proc.returncode == 0, stderr[-3000:]
