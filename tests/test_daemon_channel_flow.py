"""A channel with a slow reader under agentd: the sender waits (Faust's full queue)
instead of the supervisor queueing everything it sends in its own memory.

Before ``channelflow.py`` the sending agent ran through its whole topic at once and
every message waited in the supervisor for the reader, however many there were."""

from __future__ import annotations

import json
import time
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed, wait_until
from test_cli_client import agentd

FLOW_APP = """
import asyncio
import os
import agentlib as faust

app = faust.App("channel-flow-app")
source = app.topic(os.environ["IN_TOPIC"], value_type=bytes, value_serializer="raw")
work = app.channel(maxsize=5)
OUT = os.environ["OUT_DIR"]


@app.agent(source)
async def produce(stream):
    with open(os.path.join(OUT, "sent"), "a") as sent:
        async for value in stream:
            await work.send(value=value + b"." * 2000)
            await asyncio.sleep(0.001)  # 1,000 a second at most: the reader does 20
            sent.write(value.decode() + "\\n")
            sent.flush()


@app.agent(work)
async def consume(stream):
    with open(os.path.join(OUT, "received"), "a") as received:
        async for value in stream:
            if not os.path.exists(os.path.join(OUT, "go")):
                await asyncio.sleep(0.05)
            received.write(value.rstrip(b".").decode() + "\\n")
            received.flush()
"""

MESSAGES = 3000
#: what may be between the two agents at once: the reader's max_in_flight (4), its
#: 64 KiB ring (about 30 of these 2 KB messages), the channel's maxsize in the
#: supervisor (5), and what the sender had sent when the supervisor set the flag
MOST_BETWEEN = 300


def full_channel(daemon: Agentd) -> dict | None:
    """The channel as ``agentd status --json`` shows it, if it shows it full now."""
    (channel,) = json.loads(agentd(daemon, "status", "--json").stdout)["channels"]
    return channel if channel["full"] else None


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.kafka
def test_a_slow_channel_reader_makes_the_sender_wait_and_loses_nothing(
        kafka_bootstrap, new_topic, tmp_path):
    source = new_topic(2)
    out = tmp_path / "out"
    out.mkdir()
    group = kafkatools.unique_name("channel-flow")
    settings = {"app": "flow_app:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    agents = {"produce": {"instances": 1},
              "consume": {"instances": 1, "ring_size": "64KiB", "max_in_flight": 4}}
    with Agentd(tmp_path, settings, agents=agents, modules={"flow_app": FLOW_APP},
                env={"IN_TOPIC": source, "OUT_DIR": str(out)}) as daemon:
        daemon.wait_consuming()
        kafkatools.produce(kafka_bootstrap, source,
                           [(None, str(i).encode()) for i in range(MESSAGES)])
        wait_until(lambda: daemon.assert_running() or lines(out / "received"), 30,
                   "the reader's first message")
        most = 0
        slow_until = time.monotonic() + 5  # the reader takes 50 ms a message
        while time.monotonic() < slow_until:
            most = max(most, len(lines(out / "sent")) - len(lines(out / "received")))
            time.sleep(0.1)
        assert 0 < most <= MOST_BETWEEN, (
            f"{most} messages sent and not yet received: the sender did not wait")
        channel = wait_until(lambda: full_channel(daemon), 30, "status to show it full")
        assert channel["channel"] == "channel-0" and channel["bound"] == 5
        assert len(channel["waiting"]) == 1 and channel["waiting"][0] <= MOST_BETWEEN
        (out / "go").touch()  # the reader catches up; every message must arrive
        wait_until(lambda: daemon.assert_running() or
                   len(lines(out / "received")) >= MESSAGES, 60, "every message received")
        wait_committed(daemon, kafka_bootstrap, group, source, 30, "the source committed")
        assert daemon.stop() == 0
    assert sorted(map(int, lines(out / "received"))) == list(range(MESSAGES))
    assert sorted(map(int, lines(out / "sent"))) == list(range(MESSAGES))
