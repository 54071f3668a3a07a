"""A faust-streaming client asks an agent that agentd runs, and gets agentd's answer.

The Faust side is the seed's pattern: an ``@app.command`` that calls ``adding.ask``,
run as ``faust -A asker ask-once``. Commands run Faust in client mode (its own agents
are not started), so the answer can only come from agentd; the Faust agent's body
would answer something else. Faust can hang on exit: the process gets a hard timeout
and its whole group is killed.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import kafkatools
import pytest
from agentdproc import Agentd

AGENTD_SIDE = """
import os
import agentlib as faust

app = faust.App("faust-asked-app")


class Add(faust.Record, namespace="asked.Add"):
    a: int
    b: int


@app.agent(app.topic(os.environ["ASK_TOPIC"], value_type=Add))
async def adding(stream):
    async for value in stream:
        yield value.a + value.b
"""

FAUST_SIDE = """
import os
import faust


class Add(faust.Record, namespace="asked.Add"):
    a: int
    b: int


app = faust.App("faust-asker", broker=os.environ["FAUST_BROKER"], web_enabled=False,
                topic_replication_factor=1, datadir=os.environ["FAUST_DATADIR"])
topic = app.topic(os.environ["ASK_TOPIC"], value_type=Add)


@app.agent(topic)
async def adding(stream):
    async for value in stream:
        yield "answered by faust itself"


@app.command()
async def ask_once():
    answer = await adding.ask(Add(a=2, b=3))
    print(f"ANSWER={answer!r}", flush=True)
"""


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """What ``proc`` printed up to the line holding ``marker`` (or all, at the timeout)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            break
    return "".join(lines)


@pytest.mark.kafka
def test_a_faust_client_asks_an_agent_run_by_agentd_and_gets_the_answer(
        kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic(4)
    settings = {"app": "asked:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("asked")}
    (tmp_path / "asker.py").write_text(textwrap.dedent(FAUST_SIDE))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "ASK_TOPIC": topic,
           "FAUST_BROKER": f"kafka://{kafka_bootstrap}",
           "FAUST_DATADIR": str(tmp_path / "faust-data")}
    env.pop("AGENTD_BROKER", None)
    with Agentd(tmp_path, settings, modules={"asked": AGENTD_SIDE},
                env={"ASK_TOPIC": topic}) as daemon:
        daemon.wait_consuming()
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "asker", "ask-once"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output = read_until(proc, "ANSWER=", timeout=120)
        finally:
            # Faust prints the answer, then may wait forever in wait_empty on exit.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        assert "ANSWER=5\n" in output, output[-3000:]
        assert daemon.stop() == 0
