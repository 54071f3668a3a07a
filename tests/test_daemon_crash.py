"""Instances that die: nothing is lost, commits never pass unprocessed work, poison
messages are taken out after ``poison_after`` crashes while the rest keeps flowing."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

import kafkatools
import pytest
from agentdproc import POISON_AGENT, Agentd, wait_committed
from agentsrc import agent_module
from test_daemon_pipeline import keyed_items

N = 100_000

SLOW_RELAY_AGENT = agent_module("slow-relay-app", "relay", """
    time.sleep(0.00005)  # enough work that the run outlasts several kills
    yield value
""", imports=["time"])


def sink_values(bootstrap: str, topic: str) -> list[bytes]:
    return [r.value for r in kafkatools.read_to_end(bootstrap, topic) if r.value is not None]


@pytest.mark.kafka
@pytest.mark.parametrize("ordering", ["partition", "key"])
def test_killing_an_instance_every_second_loses_nothing_and_commits_only_processed_work(
        kafka_bootstrap, new_topic, tmp_path, ordering):
    source, sink = new_topic(8), new_topic(1)
    items = keyed_items(N, 1000)
    kafkatools.produce(kafka_bootstrap, source, items)
    inputs = {(r.partition, r.offset): r.value
              for r in kafkatools.read_to_end(kafka_bootstrap, source)}
    group = kafkatools.unique_name("crash")
    settings = {"app": "slow_relay:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    kills = 0
    commit_checks = 0
    with Agentd(tmp_path, settings, agents={"relay": {"instances": 2, "ordering": ordering}},
                modules={"slow_relay": SLOW_RELAY_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        deadline = time.monotonic() + 240
        while not kafkatools.committed_equals_end(kafka_bootstrap, group, source):
            assert time.monotonic() < deadline, "the run did not finish"
            daemon.assert_running()
            pids = daemon.instance_pids()
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
                kills += 1
            time.sleep(1.0)
            if kills % 3 == 1:
                # Whatever is committed now must already be in the sink.
                committed = kafkatools.committed_offsets(kafka_bootstrap, group, source)
                seen = set(sink_values(kafka_bootstrap, sink))
                missing = [tp for tp, value in inputs.items()
                           if tp[1] < committed.get(tp[0], 0) and value not in seen]
                assert not missing, f"committed past unprocessed messages: {missing[:5]}"
                commit_checks += 1
        assert daemon.stop() == 0
    values = sink_values(kafka_bootstrap, sink)
    counts = Counter(values)
    assert set(counts) == {value for _, value in items}, "inputs missing from the sink"
    duplicates = sum(count - 1 for count in counts.values())
    print(f"\n{ordering}: {kills} kills, {commit_checks} commit checks, {duplicates} duplicates "
          f"of {N} messages ({len(values)} in the sink)")
    assert kills >= 2 and commit_checks >= 1
    assert "re-dispatching" in daemon.log()
    assert kafkatools.committed_equals_end(kafka_bootstrap, group, source)


@pytest.mark.kafka
def test_a_poison_message_goes_to_the_dead_letter_topic_while_others_flow(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(4), new_topic(1)
    dlq = kafkatools.create_topic(kafka_bootstrap, f"{source}.dlq", 1)
    before = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(200)]
    after = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(200, 400)]
    kafkatools.produce(kafka_bootstrap, source, [*before, (b"k7", b"poison"), *after])
    group = kafkatools.unique_name("poison")
    settings = {"app": "poison_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    agents = {"guarded": {"instances": 2, "on_error": "dead_letter", "poison_after": 3}}
    with Agentd(tmp_path, settings, agents=agents, modules={"poison_agent": POISON_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        wait_committed(daemon, kafka_bootstrap, group, source,
                       120, "the poison message to be dealt with and everything committed")
        more = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(400, 500)]
        kafkatools.produce(kafka_bootstrap, source, more)
        wait_committed(daemon, kafka_bootstrap, group, source,
                       60, "messages after the poison to flow")
        assert daemon.stop() == 0
    dead = kafkatools.read_to_end(kafka_bootstrap, dlq)
    assert [r.value for r in dead] == [b"poison"]
    headers = dict(dead[0].headers)
    assert headers["agentd-original-topic"] == source.encode()
    assert headers["agentd-agent"] == b"poison_agent.guarded"
    assert b"poison" in headers["agentd-error"]
    poison_input = next(r for r in kafkatools.read_to_end(kafka_bootstrap, source)
                    if r.value == b"poison")
    assert headers["agentd-original-partition"] == str(poison_input.partition).encode()
    assert headers["agentd-original-offset"] == str(poison_input.offset).encode()
    assert set(sink_values(kafka_bootstrap, sink)) == {
        value for _, value in [*before, *after, *more]}
    assert daemon.log().count("died") >= 3


FRAGILE_AGENT = agent_module("fragile-app", "fragile", keyed=False, start="""
    # Count the starts in instance processes (children of the same zygote), not any
    # run of this body elsewhere; the first three fail before reading anything.
    with open(os.environ["STARTS_FILE"], "a+") as starts:
        starts.write(f"{os.getpid()} {os.getppid()}\\n")
        starts.seek(0)
        siblings = [line for line in starts if line.split()[1] == str(os.getppid())]
    if len(siblings) <= 3:
        raise RuntimeError("not ready yet")
""")


@pytest.mark.kafka
def test_an_agent_that_fails_before_reading_is_restarted_without_blaming_a_record(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(1), new_topic(1)
    items = [(None, f"v{i}".encode()) for i in range(100)]
    kafkatools.produce(kafka_bootstrap, source, items)
    group = kafkatools.unique_name("fragile")
    settings = {"app": "fragile_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    agents = {"fragile": {"on_error": "dead_letter", "poison_after": 1}}
    with Agentd(tmp_path, settings, agents=agents, modules={"fragile_agent": FRAGILE_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink,
                     "STARTS_FILE": str(tmp_path / "starts")}) as daemon:
        daemon.wait_consuming()
        wait_committed(daemon, kafka_bootstrap, group, source,
                       60, "the agent to start on its fourth try and process everything")
        assert daemon.stop() == 0
    assert kafkatools.read_to_end(kafka_bootstrap, f"{source}.dlq") == []
    assert sorted(sink_values(kafka_bootstrap, sink)) == sorted(v for _, v in items)
    # Three deaths, one of them with a single record in flight: not blamed on it.
    assert daemon.log().count("stopped: RuntimeError: not ready yet") == 3
