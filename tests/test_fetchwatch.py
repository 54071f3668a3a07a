"""Assigned partitions that never start fetching are named in the log
(``supervisor/daemon/fetchwatch.py``): the rule on librdkafka statistics documents
made here, and the statistics (what the watch reads) from a real consumer; the case
that made the watch, a transaction left hanging on a real broker, is
``test_hanging_transaction.py``."""

from __future__ import annotations

import json
import logging
import time

import kafkatools
import pytest
from confluent_kafka import Consumer, TopicPartition

from supervisor.daemon.fetchwatch import CHECK_EVERY, NO_OFFSET, WARN_AFTER, FetchWatch


def stats(**partitions: tuple[str, int]) -> str:
    """A librdkafka statistics document: ``t0=("active", 5)`` is topic t, partition 0,
    its fetch state and committed offset."""
    topics: dict[str, dict] = {}
    for name, (state, committed) in partitions.items():
        topic, partition = name[0], name[1:]
        topics.setdefault(topic, {"partitions": {"-1": {"fetch_state": "none"}}})
        topics[topic]["partitions"][partition] = {"fetch_state": state,
                                                  "committed_offset": committed}
    return json.dumps({"name": "rdkafka#consumer-1", "topics": topics})


def watch_of(exactly_once: bool = True, **kwargs) -> FetchWatch:
    watch = FetchWatch("g", exactly_once=exactly_once, **kwargs)
    watch.stale = 0
    return watch


def test_a_partition_not_fetched_after_its_assignment_is_named_once(caplog):
    watch = watch_of()
    watch.assigned([("t", 0), ("t", 1)], now=100.0)
    watch.on_stats(stats(t0=("active", 3), t1=("none", NO_OFFSET)))  # begun before: skipped
    assert watch.tick(now=100.0 + WARN_AFTER / 2) == []
    assert watch.waiting.keys() == {("t", 0), ("t", 1)}
    watch.on_stats(stats(t0=("active", 3), t1=("none", NO_OFFSET)))
    caplog.set_level(logging.INFO, "agentd")
    assert watch.tick(now=100.0 + WARN_AFTER / 2 + CHECK_EVERY) == []
    assert watch.waiting.keys() == {("t", 1)}  # t[0] fetching: no longer watched
    assert watch.tick(now=100.0 + WARN_AFTER + CHECK_EVERY) == [("t", 1)]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "t[1]" in errors[0].message
    assert "those of t[1] never came" in errors[0].message
    assert "group g" in errors[0].message and "find-hanging" in errors[0].message
    assert watch.tick(now=100.0 + WARN_AFTER + 2 * CHECK_EVERY) == []  # said once
    watch.on_stats(stats(t1=("active", 9)))
    watch.tick(now=100.0 + WARN_AFTER + 3 * CHECK_EVERY)
    assert not watch.waiting and not watch.warned
    assert "t[1] started fetching 45 s after its assignment" in caplog.text


def test_under_at_least_once_it_is_a_warning_without_the_transaction_story(caplog):
    watch = watch_of(exactly_once=False)
    watch.assigned([("t", 0)], now=0.0)
    watch.on_stats(stats(t0=("offset-query", NO_OFFSET)))
    caplog.set_level(logging.INFO, "agentd")
    assert watch.tick(now=WARN_AFTER) == [("t", 0)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "t[0]" in warnings[0].message
    assert "transaction" not in caplog.text


def test_statistics_are_not_read_while_nothing_is_watched():
    watch = watch_of()
    watch.on_stats("this is not JSON")  # not parsed: nothing waits
    watch.assigned([("t", 0)], now=0.0)
    watch.on_stats("begun before the assignment: skipped, not parsed")
    watch.on_stats(stats(t0=("active", 1)))
    assert watch.tick(now=1.0) == [] and not watch.waiting


def test_a_revoked_partition_is_no_longer_watched_and_checks_are_spaced():
    watch = watch_of(exactly_once=False)
    watch.assigned([("t", 0)], now=0.0)
    watch.revoked([("t", 0)])
    assert watch.tick(now=WARN_AFTER * 2) == []
    watch.assigned([("t", 1)], now=WARN_AFTER * 2)
    assert watch.tick(now=WARN_AFTER * 2 + 1) == []  # within CHECK_EVERY
    assert watch.tick(now=WARN_AFTER * 4) == [("t", 1)]


def test_a_reassigned_partition_needs_new_statistics_to_count_as_fetching():
    """What the cached watermarks got wrong: a partition fetched before a revoke looked
    fetched again at once after the next assignment."""
    watch = watch_of()
    watch.assigned([("t", 0)], now=0.0)
    watch.on_stats(stats(t0=("active", 5)))
    watch.revoked([("t", 0)])
    watch.assigned([("t", 0)], now=10.0)
    watch.on_stats(stats(t0=("active", 5)))   # begun before the assignment: skipped
    assert watch.tick(now=10.0 + WARN_AFTER) == [("t", 0)]


def test_time_paused_by_the_daemon_does_not_count():
    paused = {("t", 0)}
    watch = watch_of(exactly_once=False, paused=lambda tp: tp in paused)
    watch.assigned([("t", 0)], now=0.0)
    assert watch.tick(now=WARN_AFTER) == []      # paused all along
    paused.clear()
    assert watch.tick(now=WARN_AFTER + CHECK_EVERY) == []
    assert watch.tick(now=2 * WARN_AFTER) == [("t", 0)]


@pytest.mark.kafka
def test_librdkafka_statistics_say_active_for_every_fetching_partition_even_an_empty_one(
        kafka_bootstrap, new_topic):
    """What the watch relies on: a subscribed consumer's statistics give each assigned
    partition's ``fetch_state``, ``active`` once it fetches, an empty partition and a
    paused one (the daemon's backpressure, counted apart) too."""
    topic = new_topic(partitions=3)
    kafkatools.produce(kafka_bootstrap, topic, [(b"k", b"v")], partition=0)
    watch = FetchWatch(topic, exactly_once=True)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "statistics.interval.ms": 200, "stats_cb": watch.on_stats})
    try:
        consumer.subscribe([topic], on_assign=lambda c, parts: watch.assigned(
            (tp.topic, tp.partition) for tp in parts))
        deadline = time.monotonic() + 30
        while len(watch.states) < 3 or not all(map(watch.fetching, watch.waiting)):
            assert time.monotonic() < deadline, f"not all active in 30 s: {watch.states}"
            consumer.consume(10, 0.2)
            if consumer.assignment():
                consumer.pause([TopicPartition(topic, 2)])
        assert watch.tick() == [] and not watch.waiting
    finally:
        consumer.close()
