"""Instance health: a worker that holds records but makes no progress (here: SIGSTOP)
is killed and restarted; workers past ``max_age`` or ``max_rss`` are recycled
gracefully, with every input processed exactly once."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, drain_and_stop, wait_until
from agentsrc import agent_module
from steadyload import SteadyLoad, parse_output
from test_daemon_lifecycle import SLOW_AGENT, numbered, sink_counts

GROWING_AGENT = agent_module("growing-app", "grower", """
    hoard.append(bytearray(256 * 1024))   # a leak: 256 KiB per record
    yield value
""", module="hoard = []")


def daemon_for(workdir: Path, bootstrap: str, source: str, sink: str, group: str,
               module: str, source_code: str, agent: dict[str, object],
               env: dict[str, str] | None = None) -> Agentd:
    settings = {"app": f"{module}:app", "broker": f"kafka://{bootstrap}", "group_id": group,
                "commit_interval": 0.5, "log_level": "INFO"}
    name = re.search(r"async def (\w+)", source_code)
    assert name is not None
    return Agentd(workdir, settings, agents={name.group(1): agent},
                  modules={module: source_code},
                  env={"IN_TOPIC": source, "SINK_TOPIC": sink, **(env or {})})


def exactly_once(bootstrap: str, sink: str, sent: int) -> None:
    counts = Counter(parse_output(r.value)[2] for r in kafkatools.read_to_end(bootstrap, sink)
                     if r.value is not None)
    assert set(counts) == set(range(sent)), "nothing lost"
    assert max(counts.values()) == 1, "a graceful recycle repeats nothing"


@pytest.mark.kafka
def test_a_stopped_worker_holding_records_is_killed_and_restarted_with_nothing_lost(
        kafka_bootstrap, new_topic, tmp_path):
    n = 3000
    source, sink = new_topic(4), new_topic(1)
    kafkatools.produce(kafka_bootstrap, source, numbered(n))
    group = kafkatools.unique_name("hung")
    agent = {"instances": 2, "heartbeat_timeout": 2}
    with daemon_for(tmp_path, kafka_bootstrap, source, sink, group, "slow_agent", SLOW_AGENT,
                    agent, env={"AGENT_DELAY": "0.002"}) as daemon:
        daemon.wait_consuming()
        wait_until(lambda: len(daemon.instance_pids()) == 2, 30, "two instances")
        victim = daemon.instance_pids()[0]
        os.kill(victim, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_until(lambda: victim not in daemon.instance_pids() and
                   len(daemon.instance_pids()) == 2, 30, "the stopped worker to be replaced",
                   interval=0.05)
        replaced_s = time.monotonic() - stopped_at
        drain_and_stop(daemon, kafka_bootstrap, group, source)
    assert "no progress for" in daemon.log()
    counts = sink_counts(kafka_bootstrap, sink)
    assert set(counts) == {str(i).encode() for i in range(n)}, "nothing lost"
    print(f"\nSIGSTOPped worker replaced {replaced_s * 1000:.0f} ms after the stop "
          f"(heartbeat_timeout 2s); {sum(counts.values()) - n} re-processed records")


@pytest.mark.kafka
def test_max_age_recycles_instances_under_load_with_every_input_exactly_once(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(4), new_topic(1)
    group = kafkatools.unique_name("maxage")
    from test_daemon_reload import tagging

    agent = {"instances": 2, "max_age": 1.5}
    with daemon_for(tmp_path, kafka_bootstrap, source, sink, group, "tagging_agent",
                    tagging("v1"), agent) as daemon:
        daemon.wait_consuming()
        with SteadyLoad(kafka_bootstrap, source, partitions=4, rate=300) as load:
            wait_until(lambda: daemon.assert_running() or
                       daemon.log().count("recycled in") >= 4, 60, "four recycles")
            sent = load.stop()
        drain_and_stop(daemon, kafka_bootstrap, group, source)
    pauses = [int(ms) for ms in re.findall(r"recycled in (\d+) ms", daemon.log())]
    exactly_once(kafka_bootstrap, sink, sent)
    print(f"\nmax_age 1.5s: {len(pauses)} recycles, pauses {pauses} ms, {sent} inputs once")


@pytest.mark.kafka
def test_max_rss_recycles_a_leaking_instance_with_every_input_exactly_once(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(4), new_topic(1)
    group = kafkatools.unique_name("maxrss")
    agent = {"instances": 1, "max_rss": "120MiB"}
    code = GROWING_AGENT
    with daemon_for(tmp_path, kafka_bootstrap, source, sink, group, "growing_agent", code,
                    agent) as daemon:
        daemon.wait_consuming()
        with SteadyLoad(kafka_bootstrap, source, partitions=4, rate=200) as load:
            wait_until(lambda: daemon.assert_running() or "over max_rss" in daemon.log(),
                       60, "a recycle for RSS")
            wait_until(lambda: "recycled in" in daemon.log(), 30, "the recycle to finish")
            time.sleep(0.5)
            sent = load.stop()
        drain_and_stop(daemon, kafka_bootstrap, group, source)
    exactly_once(kafka_bootstrap, sink, sent)
    line = next(x for x in daemon.log().splitlines() if "over max_rss" in x)
    print(f"\n{line.split(': ', 1)[-1]}")
