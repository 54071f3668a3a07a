"""agentd end to end on the real broker: every input reaches the sink, in key order,
and the group's committed offsets end at the topic's end offsets.

The agent relays each ``key:seq`` value to a one-partition sink topic through a topic
sink, so the sink's order is the order the instances' producers delivered in: for one
key (always one instance in ``partition`` and ``key`` ordering) it must be ``seq``
order.
"""

from __future__ import annotations

import time
from collections import defaultdict

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed
from agentsrc import agent_module

N = 100_000
KEYS = 1000

RELAY_AGENT = agent_module("relay-app", "relay")


def keyed_items(n: int, keys: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i % keys}".encode(), f"k{i % keys}:{i}".encode()) for i in range(n)]


def sequences_by_key(values: list[bytes]) -> dict[str, list[int]]:
    by_key: dict[str, list[int]] = defaultdict(list)
    for value in values:
        key, _, seq = value.decode().partition(":")
        by_key[key].append(int(seq))
    return by_key


@pytest.mark.kafka
@pytest.mark.parametrize("ordering", ["partition", "key"])
def test_every_input_reaches_the_sink_in_key_order_and_commits_reach_the_end(
        kafka_bootstrap, new_topic, tmp_path, ordering):
    source, sink = new_topic(8), new_topic(1)
    kafkatools.produce(kafka_bootstrap, source, keyed_items(N, KEYS))
    group = kafkatools.unique_name("relay")
    settings = {"app": "relay_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.5, "log_level": "INFO"}
    agents = {"relay": {"instances": 2, "ordering": ordering}}
    with Agentd(tmp_path, settings, agents=agents, modules={"relay_agent": RELAY_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        started = time.monotonic()
        wait_committed(daemon, kafka_bootstrap, group, source,
                       180, "committed offsets to reach the end offsets", interval=1.0)
        elapsed = time.monotonic() - started
        assert daemon.stop() == 0
    print(f"\n{ordering}: {N} messages through 2 instances in about {elapsed:.1f}s "
          f"(~{N / elapsed:,.0f} msg/s incl. commit lag)")
    values = [record.value for record in kafkatools.read_to_end(kafka_bootstrap, sink)]
    assert all(value is not None for value in values)
    by_key = sequences_by_key([v for v in values if v is not None])
    expected = sequences_by_key([value for _, value in keyed_items(N, KEYS)])
    assert {key: sorted(set(seqs)) for key, seqs in by_key.items()} == expected
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"key {key} out of order"
    assert len(values) == N, f"{len(values) - N} duplicates in a run without failures"
    assert kafkatools.committed_equals_end(kafka_bootstrap, group, source)


@pytest.mark.kafka
def test_ordering_none_across_three_instances_loses_nothing(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(2), new_topic(1)
    items = keyed_items(20_000, 100)
    kafkatools.produce(kafka_bootstrap, source, items)
    group = kafkatools.unique_name("relay-none")
    settings = {"app": "relay_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.5}
    with Agentd(tmp_path, settings, agents={"relay": {"instances": 3, "ordering": "none"}},
                modules={"relay_agent": RELAY_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        wait_committed(daemon, kafka_bootstrap, group, source,
                       120, "committed offsets to reach the end offsets", interval=1.0)
        assert daemon.stop() == 0
    values = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, sink)]
    assert sorted(v for v in values if v is not None) == sorted(v for _, v in items)
