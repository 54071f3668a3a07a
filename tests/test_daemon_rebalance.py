"""Two supervisors in one consumer group (cooperative-sticky): the second one joins
mid-run and takes partitions, then leaves and hands them back; every input reaches
the sink, and the duplicates the at-least-once window allows are counted.

Each supervisor's agent tags its outputs with its own name, so the sink shows that
the partitions really were split.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, drain_and_stop, wait_until
from steadyload import SteadyLoad, longest_gap_ms, parse_output
from test_daemon_reload import tagging

PARTITIONS = 8


def member(workdir: Path, bootstrap: str, source: str, sink: str, group: str,
           tag: str) -> Agentd:
    workdir.mkdir()
    settings = {"app": "tagging_agent:app", "broker": f"kafka://{bootstrap}",
                "group_id": group, "commit_interval": 0.5, "log_level": "INFO"}
    return Agentd(workdir, settings, agents={"tagger": {"instances": 2}},
                  modules={"tagging_agent": tagging(tag)},
                  kafka={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                  env={"IN_TOPIC": source, "SINK_TOPIC": sink})


def assigned_counts(daemon: Agentd) -> list[int]:
    return [int(n) for n in re.findall(r"assigned (\d+) partitions", daemon.log())]


def revoked_counts(daemon: Agentd) -> list[int]:
    return [int(n) for n in re.findall(r"revoked (\d+) partitions", daemon.log())]


@pytest.mark.kafka
def test_second_supervisor_joins_and_leaves_with_every_input_in_the_sink(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(PARTITIONS), new_topic(1)
    group = kafkatools.unique_name("pair")
    with member(tmp_path / "a", kafka_bootstrap, source, sink, group, "a") as first:
        first.wait_consuming()
        with SteadyLoad(kafka_bootstrap, source, partitions=PARTITIONS, rate=400) as load:
            time.sleep(1.5)
            with member(tmp_path / "b", kafka_bootstrap, source, sink, group, "b") as second:
                wait_until(lambda: second.assert_running() or
                           any(assigned_counts(second)), 60, "the second supervisor's share")
                time.sleep(2.0)
                assert second.stop() == 0, second.log()[-3000:]
            wait_until(lambda: first.assert_running() or
                       sum(assigned_counts(first)) - sum(revoked_counts(first)) == PARTITIONS,
                       60, "the first supervisor to get every partition back")
            time.sleep(1.0)
            sent = load.stop()
        drain_and_stop(first, kafka_bootstrap, group, source)
    outputs = [(r.timestamp_ms, r.value) for r in kafkatools.read_to_end(kafka_bootstrap, sink)
               if r.value is not None]
    counts = Counter(parse_output(value)[2] for _, value in outputs)
    missing = set(range(sent)) - set(counts)
    assert not missing, f"{len(missing)} inputs lost, e.g. {sorted(missing)[:5]}"
    by_tag = Counter(parse_output(value)[0] for _, value in outputs)
    assert by_tag["a"] > 0 and by_tag["b"] > 0, by_tag
    duplicates = sum(counts.values()) - len(counts)
    print(f"\njoin + leave under {load.rate:.0f} msg/s: {sent} inputs, outputs by supervisor "
          f"{dict(by_tag)}, {duplicates} duplicates; longest per-partition gap "
          f"{longest_gap_ms(outputs):.0f} ms; the second got {assigned_counts(second)}")
