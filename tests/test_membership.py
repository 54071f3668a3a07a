"""The daemon consumer's settings and its replacement after fatal errors (pure logic;
``tests/test_daemon_fenced.py`` fences a daemon on a real broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from supervisor.config.loader import loads
from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.group import GroupMember
from supervisor.daemon.membership import REJOIN_BACKOFF, REJOIN_BACKOFF_MAX, GroupConsumer


def group_consumer(tmp_path: Path, extra: str = "") -> GroupConsumer:
    fleet = Fleet(loads(f'app = "x"\nstate_dir = "{tmp_path}"\n{extra}'), "h:9092")
    datapath = DataPath(None, fleet)
    committer = Committer(datapath.tracker, fleet, lambda inst, record: None)
    group = GroupMember(fleet, datapath, committer, lambda keyed: None)
    return GroupConsumer(fleet, datapath, committer, group, embedded=False)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_static_membership_except_under_exactly_once(tmp_path: Path, guarantee: str) -> None:
    consumer = group_consumer(tmp_path, f'processing_guarantee = "{guarantee}"\n')
    consumer.fleet.guarantee = guarantee
    settings = consumer.settings()
    eos = guarantee == "exactly_once"
    assert settings.get("group.instance.id") == (None if eos else consumer.fleet.daemon_identity())
    assert (settings.get("isolation.level") == "read_committed") == eos


def test_an_empty_instance_id_makes_a_dynamic_member(tmp_path: Path) -> None:
    consumer = group_consumer(tmp_path, '[kafka]\n"group.instance.id" = ""\n')
    assert "group.instance.id" not in consumer.settings()


def test_fatal_errors_replace_the_consumer_with_a_growing_backoff(tmp_path: Path) -> None:
    consumer = group_consumer(tmp_path)
    replaced: list[Any] = []
    consumer.replace = replaced.append  # type: ignore[method-assign]
    fatal = KafkaError(KafkaError._FATAL, "fenced")
    assert not consumer.replace_if_fatal(now=0.0)  # nothing reported
    consumer.datapath.fatal = fatal
    assert consumer.replace_if_fatal(now=0.0)
    consumer.datapath.fatal = fatal
    assert not consumer.replace_if_fatal(now=REJOIN_BACKOFF / 2)  # backing off
    assert consumer.replace_if_fatal(now=REJOIN_BACKOFF)
    assert consumer.datapath.fatal is None and replaced == [fatal, fatal]
    for step in range(12):
        consumer.datapath.fatal = fatal
        assert consumer.replace_if_fatal(now=10_000.0 * (step + 1))
    assert consumer._backoff == REJOIN_BACKOFF_MAX
