"""``agentd ask`` and ``agentd send`` against the embedded broker answer in well under a
second: the reply topic is neither created nor deleted through the Admin API there
(librdkafka's mock cluster has no controller; each call waited for its timeout), and
the reply consumer does not sit out the mock's whole Fetch wait."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from agentdproc import AGENTD, Agentd

ASK_APP = """
import agentlib as faust

app = faust.App("ask-embedded")


@app.agent()
async def double(stream):
    async for value in stream:
        yield value * 2
"""

# What `agentd ask`/`agentd send` run once the app is imported, timed in the process:
# the interpreter's own start-up on a loaded two-core box is not agentd's to cut.
TIMED_CLIENT = """
import json, sys, time
from supervisor.cli import appcmds
from supervisor.cli.clientcmds import load_client_config

config = load_client_config(sys.argv[1])
apps = appcmds.load_apps(appcmds.app_specs(None, config))
appcmds.use_daemon_broker(config)
started = time.monotonic()
reply = appcmds.ask(apps, "double", "21", None, 30.0)
asked = time.monotonic()
meta = appcmds.send(apps, "double", "5", None, None)
sent = time.monotonic()
print(json.dumps({"reply": reply, "ask_s": asked - started, "send_s": sent - asked,
                  "topic": meta.topic}))
"""


def test_ask_and_send_against_the_embedded_broker_take_under_a_second(tmp_path) -> None:
    settings = {"app": "ask_app:app", "broker": "embedded", "commit_interval": 0.2}
    with Agentd(tmp_path, settings, modules={"ask_app": ASK_APP}) as daemon:
        daemon.wait_consuming()
        started = time.monotonic()
        first = subprocess.run([*AGENTD, "-c", str(daemon.config), "ask", "double", "4"],
                               cwd=tmp_path, env=daemon.env, capture_output=True, text=True,
                               timeout=60)
        whole_command = time.monotonic() - started
        assert (first.returncode, first.stdout.strip()) == (0, "8"), first.stderr
        assert whole_command < 5.0, f"agentd ask took {whole_command:.1f}s"
        timed = subprocess.run([sys.executable, "-c", TIMED_CLIENT, str(daemon.config)],
                               cwd=tmp_path, env=daemon.env, capture_output=True, text=True,
                               timeout=60)
        assert timed.returncode == 0, timed.stderr
        result = json.loads(timed.stdout.strip().splitlines()[-1])
        assert daemon.stop() == 0
    assert result["reply"] == 42 and result["topic"] == "ask-embedded-ask_app.double"
    assert result["ask_s"] < 1.0, result
    assert result["send_s"] < 1.0, result
    assert "Traceback" not in timed.stderr + first.stderr
    print(f"first agentd ask {whole_command:.2f}s, then ask {result['ask_s']:.3f}s, "
          f"send {result['send_s']:.3f}s")
