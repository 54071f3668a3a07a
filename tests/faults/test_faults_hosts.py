"""More than one host (issue 20): two daemons in one consumer group; one is killed
with -9 (no LeaveGroup), then the survivor's partner leaves on SIGTERM. The survivor
must own every partition again within 10 s of the kill (agentd's default
``session.timeout.ms`` is 6 s: the broker's minimum) and process what arrives after
it: nothing committed is lost, every record produced is committed."""

from __future__ import annotations

import re
import time
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, drain_and_stop, wait_until
from faultkit import RESULTS, Outcome

PARTITIONS = 4

FORWARD = """
import os
import agentlib as faust

app = faust.App("hosts-app")
source = app.topic(os.environ["IN_TOPIC"], value_type=bytes, value_serializer="raw")


@app.agent(source)
async def forward(stream):
    async for value in stream:
        yield value
"""


def member(workdir: Path, bootstrap: str, source: str, group: str) -> Agentd:
    """A daemon with agentd's default session timeout and heartbeat (no ``[kafka]``)."""
    workdir.mkdir()
    settings = {"app": "forwarding", "broker": f"kafka://{bootstrap}", "group_id": group,
                "commit_interval": 0.2}
    return Agentd(workdir, settings, agents={"forward": {"instances": 1}},
                  modules={"forwarding": FORWARD}, env={"IN_TOPIC": source})


def owned(daemon: Agentd) -> int:
    log = daemon.log()
    return (sum(int(n) for n in re.findall(r"assigned (\d+) partitions", log))
            - sum(int(n) for n in re.findall(r"revoked (\d+) partitions", log)))


@pytest.mark.kafka
def test_two_daemons_kill_9_one_survivor_owns_all_within_10s(
        kafka_bootstrap: str, new_topic, tmp_path: Path) -> None:
    source = new_topic(PARTITIONS)
    group = kafkatools.unique_name("hosts")
    with member(tmp_path / "a", kafka_bootstrap, source, group) as a:
        a.wait_consuming()
        with member(tmp_path / "b", kafka_bootstrap, source, group) as b:
            wait_until(lambda: b.assert_running() or (owned(b) > 0 and owned(a) > 0), 60,
                       "both daemons to own partitions")
            joined = owned(b)
            kafkatools.produce(kafka_bootstrap, source,
                               [(str(i).encode(), b"x") for i in range(400)])
            b.kill()
            killed = time.monotonic()
            wait_until(lambda: a.assert_running() or owned(a) == PARTITIONS, 30,
                       "the survivor to own every partition")
            took = time.monotonic() - killed
        kafkatools.produce(kafka_bootstrap, source,
                           [(str(i).encode(), b"y") for i in range(400)])
        drain_and_stop(a, kafka_bootstrap, group, source)
    committed = sum(kafkatools.committed_offsets(kafka_bootstrap, group, source).values())
    sent = sum(kafkatools.end_offsets(kafka_bootstrap, source).values())
    RESULTS.append(Outcome("20 two daemons, kill -9 one", sent, committed, sent - committed,
                           0, took, "recovery: kill to owning all partitions; dup not counted"))
    assert committed == sent == 800
    print(f"\nkill -9 one of two daemons: survivor owns all {PARTITIONS} partitions "
          f"{took:.1f} s after the kill (the dead one had {joined}); lost 0")
    assert joined > 0
    assert took < 10.0, f"took {took:.1f} s to own every partition after kill -9"


@pytest.mark.kafka
def test_two_daemons_sigterm_one_survivor_owns_all_at_once(
        kafka_bootstrap: str, new_topic, tmp_path: Path) -> None:
    source = new_topic(PARTITIONS)
    group = kafkatools.unique_name("hosts")
    with member(tmp_path / "a", kafka_bootstrap, source, group) as a:
        a.wait_consuming()
        with member(tmp_path / "b", kafka_bootstrap, source, group) as b:
            wait_until(lambda: b.assert_running() or (owned(b) > 0 and owned(a) > 0), 60,
                       "both daemons to own partitions")
            stopped = time.monotonic()
            assert b.stop() == 0, b.log()[-3000:]
            wait_until(lambda: a.assert_running() or owned(a) == PARTITIONS, 30,
                       "the survivor to own every partition")
            took = time.monotonic() - stopped
        kafkatools.produce(kafka_bootstrap, source,
                           [(str(i).encode(), b"y") for i in range(200)])
        drain_and_stop(a, kafka_bootstrap, group, source)
    print(f"\nSIGTERM one of two daemons: survivor owns all {PARTITIONS} partitions "
          f"{took:.1f} s after the signal (drain included)")
    assert took < 10.0, f"took {took:.1f} s to own every partition after SIGTERM"
