"""Assigned partitions that never start fetching are named in the log
(``supervisor/daemon/fetchwatch.py``): the rule on a fake consumer, and librdkafka's
cached watermark (what the watch reads) on a real broker."""

from __future__ import annotations

import logging
import time

import kafkatools
import pytest
from confluent_kafka import Consumer, TopicPartition

from supervisor.daemon.fetchwatch import CHECK_EVERY, NOT_FETCHED, WARN_AFTER, FetchWatch, fetched


class Watermarks:
    """A consumer whose partitions in ``fetched`` have had a fetch response."""

    def __init__(self) -> None:
        self.fetched: set[tuple[str, int]] = set()

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        assert cached  # the watch must never make a request from the loop
        return (0, 7) if (tp.topic, tp.partition) in self.fetched else (NOT_FETCHED,
                                                                         NOT_FETCHED)


def test_a_partition_not_fetched_after_its_assignment_is_warned_about_once(caplog):
    consumer, watch = Watermarks(), FetchWatch("g", exactly_once=True)
    watch.assigned([("t", 0), ("t", 1)], now=100.0)
    consumer.fetched.add(("t", 0))
    caplog.set_level(logging.INFO, "agentd")
    assert watch.tick(consumer, now=100.0 + WARN_AFTER / 2) == []
    assert watch.waiting.keys() == {("t", 1)}  # t[0] fetched: no longer watched
    assert watch.tick(consumer, now=100.0 + WARN_AFTER) == [("t", 1)]
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "t[1]" in warning[0].message
    assert "transaction" in warning[0].message and "group g" in warning[0].message
    assert watch.tick(consumer, now=100.0 + WARN_AFTER + CHECK_EVERY) == []  # said once
    consumer.fetched.add(("t", 1))
    watch.tick(consumer, now=100.0 + WARN_AFTER + 2 * CHECK_EVERY)
    assert not watch.waiting and not watch.warned
    assert "t[1] started fetching 40 s after its assignment" in caplog.text


def test_a_revoked_partition_is_no_longer_watched_and_checks_are_spaced():
    consumer, watch = Watermarks(), FetchWatch("g", exactly_once=False)
    watch.assigned([("t", 0)], now=0.0)
    watch.revoked([("t", 0)])
    assert watch.tick(consumer, now=WARN_AFTER * 2) == []
    watch.assigned([("t", 1)], now=WARN_AFTER * 2)
    assert watch.tick(consumer, now=WARN_AFTER * 2 + 1) == []  # within CHECK_EVERY
    assert watch.tick(consumer, now=WARN_AFTER * 4) == [("t", 1)]


def test_time_paused_by_the_daemon_does_not_count():
    consumer, paused = Watermarks(), {("t", 0)}
    watch = FetchWatch("g", exactly_once=False, paused=lambda tp: tp in paused)
    watch.assigned([("t", 0)], now=0.0)
    assert watch.tick(consumer, now=WARN_AFTER) == []      # paused all along
    paused.clear()
    assert watch.tick(consumer, now=WARN_AFTER + CHECK_EVERY) == []
    assert watch.tick(consumer, now=2 * WARN_AFTER) == [("t", 0)]


@pytest.mark.kafka
def test_librdkafka_caches_a_watermark_once_a_partition_is_fetched_even_an_empty_one(
        kafka_bootstrap, new_topic):
    """What the watch relies on: before a partition's first fetch response its cached
    high watermark is -1001, after it a number, for an empty partition too; a
    partition assigned but paused (never fetched) keeps -1001."""
    topic = new_topic(partitions=3)
    kafkatools.produce(kafka_bootstrap, topic, [(b"k", b"v")], partition=0)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        consumer.pause([TopicPartition(topic, 2)])
        assert not fetched(consumer, (topic, 0))
        deadline = time.monotonic() + 30
        while not (fetched(consumer, (topic, 0)) and fetched(consumer, (topic, 1))):
            assert time.monotonic() < deadline, "no fetch response in 30 s"
            consumer.poll(0.2)
        assert consumer.get_watermark_offsets(TopicPartition(topic, 1), cached=True)[1] == 0
        assert not fetched(consumer, (topic, 2))
        watch = FetchWatch(topic, exactly_once=False)
        watch.assigned([(topic, p) for p in range(3)], now=0.0)
        assert watch.tick(consumer, now=WARN_AFTER) == [(topic, 2)]
    finally:
        consumer.close()

