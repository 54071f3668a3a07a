"""The broker goes away for 20 s and comes back on the same log dir (issue 10, scenario 3).

This scenario has its own ``agentd dev-broker --data-dir DIR --port PORT``: the session
broker is shared by every test and must not be bounced. While the broker is down the
supervisor's fetches, commits and its instances' produces all fail; the daemon must
keep running, resume by itself when the broker is back (same port, same data) and
lose nothing: what was in flight is either committed after the sink has it, or
delivered again.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import kafkatools
import pytest
from faultkit import FaultRun, Scale, load, running_for

from supervisor.devbrokers.devbroker import free_port

DOWN_S = 20.0


def stop_broker(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.kafka
def test_broker_down_20s_and_back_on_the_same_data_dir_loses_nothing(
        tmp_path: Path, scale: Scale) -> None:
    data_dir, port = tmp_path / "kafka", free_port()
    bootstrap = f"127.0.0.1:{port}"
    bounces = 1 if not scale.soak else 3
    broker, _ = kafkatools.spawn_dev_broker("--data-dir", str(data_dir), "--port", str(port))
    try:
        run = FaultRun("3 broker down 20s", bootstrap, tmp_path / "run")
        run.workdir.mkdir()
        # A lagging forwarder (two thirds of the load) holds a backlog when the broker
        # goes: its instances keep working through the outage and their sink produces
        # must wait for the broker, not be given up on.
        with run.forwarder({"instances": 2}, env={"FORWARD_DELAY": f"{3 / scale.rate:g}"}) \
                as daemon:
            daemon.wait_consuming()
            with load(run, scale.rate) as (stream, watcher):
                for _ in range(bounces):
                    time.sleep(5.0)
                    stop_broker(broker)
                    for _ in running_for(DOWN_S, daemon):
                        pass  # the daemon must ride it out: running_for fails if it exits
                    broker, _ = kafkatools.spawn_dev_broker(
                        "--data-dir", str(data_dir), "--port", str(port))
                time.sleep(5.0)
                stream.stop()
                run.finish(daemon, stream, watcher,
                           note=f"{bounces} bounce(s) of {DOWN_S:.0f}s, same data dir")
    finally:
        stop_broker(broker)
    # Riding it out means no message was treated as failed meanwhile: a sink produce
    # given up on during the outage would show here (on_error=log acks it).
    failed = [line for line in daemon.log().splitlines()
              if "error processing" in line or "Traceback" in line]
    assert not failed, "\n".join(failed[:5])
