"""``agentd start`` against ``agentd dev-broker --embedded`` (``broker = "kafka://..."``,
librdkafka's mock cluster served by another process): it has no CreateTopics, so
agentd recognises it, says so in one log line and lets topics auto-create; and any
start-up failure is one line, never a traceback."""

from __future__ import annotations

import json
import signal
import time

import kafkatools
from agentdproc import Agentd, wait_until
from click.testing import CliRunner
from confluent_kafka import KafkaException

from supervisor.cli.commands import main
from supervisor.daemon.supervisor import Supervisor

ECHO_APP = """
import json
import os
import agentlib as faust

app = faust.App(os.environ["APP_ID"])
source = app.topic(os.environ["IN_TOPIC"])
sink = app.topic(os.environ["SINK_TOPIC"], value_type=bytes, value_serializer="raw")


@app.agent(source, sink=[sink])
async def echo(stream):
    async for value in stream:
        yield json.dumps(value).encode()
"""


def sunk(bootstrap: str, topic: str) -> list[kafkatools.Record]:
    try:
        return kafkatools.read_to_end(bootstrap, topic, timeout=10)
    except KafkaException:  # not there before the first record auto-creates it
        return []


def test_start_against_the_embedded_dev_broker_processes_records(tmp_path) -> None:
    proc, bootstrap = kafkatools.spawn_dev_broker("--embedded")
    try:
        source, sink = kafkatools.unique_name("in"), kafkatools.unique_name("out")
        group = kafkatools.unique_name("mock")
        settings = {"app": "echo_app:app", "broker": f"kafka://{bootstrap}",
                    "group_id": group, "commit_interval": 0.2}
        started = time.monotonic()
        with Agentd(tmp_path, settings, modules={"echo_app": ECHO_APP},
                    env={"IN_TOPIC": source, "SINK_TOPIC": sink,
                         "APP_ID": kafkatools.unique_name("mock")}) as daemon:
            daemon.wait_consuming(timeout=60)
            assert time.monotonic() - started < 20, "waited on topic creation"
            kafkatools.produce(bootstrap, source, [(None, json.dumps(n).encode())
                                                   for n in range(20)])
            wait_until(lambda: daemon.assert_running() or len(sunk(bootstrap, sink)) >= 20,
                       60, "the records to reach the sink")
            log = daemon.log()
            assert daemon.stop() == 0
        mock_lines = [line for line in log.splitlines() if "mock cluster" in line]
        assert len(mock_lines) == 1 and source in mock_lines[0], log
        assert "Traceback" not in log
        values = sorted(int(r.value) for r in kafkatools.read_to_end(bootstrap, sink))
        assert values == list(range(20))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_an_unforeseen_start_up_failure_is_one_line_naming_the_step(tmp_path,
                                                                    monkeypatch) -> None:
    def broken(self: Supervisor) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(Supervisor, "start_broker", broken)
    config = tmp_path / "agentd.toml"
    config.write_text(f'app = "examples.agent"\nstate_dir = "{tmp_path / "state"}"\n'
                      'log_level = "WARNING"\n')
    result = CliRunner().invoke(main, ["start", str(config)])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        "agentd start: cannot start (embedded broker): OSError: [Errno 24] Too many open files")
    assert "Traceback" not in result.output
