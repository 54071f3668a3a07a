"""agentlib.kafka: the per-process producer whose sends resolve on delivery reports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import kafkatools
import pytest
from confluent_kafka import KafkaException

from agentlib.kafka import KafkaProducer, bootstrap_servers


def test_broker_urls_become_bootstrap_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTD_BROKER", raising=False)
    assert bootstrap_servers("kafka://h1:9093,kafka://h2:9094") == "h1:9093,h2:9094"
    assert bootstrap_servers("kafka://h1;kafka://h2:1") == "h1:9092,h2:1"
    assert bootstrap_servers(["kafka://a:1", "b:2"]) == "a:1,b:2"
    assert bootstrap_servers(None) == "localhost:9092"


def test_agentd_broker_env_overrides_the_apps_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTD_BROKER", "kafka://envhost:1234")
    assert bootstrap_servers("kafka://apphost:9092") == "envhost:1234"
    assert KafkaProducer("kafka://apphost:9092").config()["bootstrap.servers"] == "envhost:1234"


def test_constructing_a_producer_touches_no_kafka() -> None:
    before = {t.name for t in threading.enumerate()}
    producer = KafkaProducer("kafka://127.0.0.1:1")
    assert producer.flush(0.1) == 0 and producer.close(0.1) == 0
    assert {t.name for t in threading.enumerate()} == before


def test_send_resolves_with_where_the_broker_stored_the_message(new_topic, kafka_bootstrap):
    topic = new_topic(partitions=3)
    producer = KafkaProducer(kafka_bootstrap)

    async def send() -> object:
        return await producer.send(topic, b"key", b"value", partition=2,
                                   headers=[("h1", b"x"), ("h2", b"y")])

    try:
        metadata = asyncio.run(send())
    finally:
        producer.close(10)
    [record] = kafkatools.read_to_end(kafka_bootstrap, topic)
    assert (metadata.topic, metadata.partition, metadata.offset) == (topic, 2, record.offset)
    assert (record.key, record.value, record.headers) == (b"key", b"value",
                                                          (("h1", b"x"), ("h2", b"y")))


def test_batched_sends_all_resolve_in_partition_order(new_topic, kafka_bootstrap):
    topic = new_topic(partitions=1)
    producer = KafkaProducer(kafka_bootstrap)

    async def burst() -> list[int]:
        futures = [producer.send_soon(topic, None, b"%d" % i) for i in range(20_000)]
        return [md.offset for md in await asyncio.gather(*futures)]

    try:
        offsets = asyncio.run(burst())
    finally:
        producer.close(10)
    assert offsets == list(range(20_000))
    values = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, topic)]
    assert values == [b"%d" % i for i in range(20_000)]


def test_failed_delivery_raises_from_send(new_topic, kafka_bootstrap):
    topic = new_topic(partitions=1)
    producer = KafkaProducer(kafka_bootstrap, config={"message.timeout.ms": 3000})

    async def send_to_missing_partition() -> None:
        await producer.send(topic, None, b"lost", partition=7)

    try:
        with pytest.raises(KafkaException, match=r"(?i)partition"):
            asyncio.run(send_to_missing_partition())
    finally:
        producer.close(10)


def test_send_unconfirmed_reports_a_failed_delivery_and_nothing_else(new_topic, kafka_bootstrap):
    topic = new_topic(partitions=1)
    producer = KafkaProducer(kafka_bootstrap, config={"message.timeout.ms": 3000})

    async def send_both() -> tuple[asyncio.Future[object], asyncio.Future[object]]:
        loop = asyncio.get_running_loop()
        delivered, lost = loop.create_future(), loop.create_future()
        producer.send_unconfirmed(topic, None, b"kept", failure=delivered)
        producer.send_unconfirmed(topic, None, b"lost", partition=7, failure=lost)
        with contextlib.suppress(KafkaException):
            await asyncio.wait_for(asyncio.shield(lost), 10)
        await asyncio.to_thread(producer.flush, 10)
        await asyncio.sleep(0.05)  # anything the flush dispatched has run by now
        return delivered, lost

    try:
        delivered, lost = asyncio.run(send_both())
    finally:
        producer.close(10)
    assert not delivered.done()
    with pytest.raises(KafkaException, match=r"(?i)partition"):
        lost.result()
    assert [r.value for r in kafkatools.read_to_end(kafka_bootstrap, topic)] == [b"kept"]


def test_send_counted_settles_a_loop_turns_messages_once_with_the_failures_named(
        new_topic, kafka_bootstrap):
    topic = new_topic(partitions=2)
    producer = KafkaProducer(kafka_bootstrap, config={"message.timeout.ms": 3000})
    settled: list[tuple[list[object], list[tuple[object, str]], dict[int, int], bool]] = []

    async def send_two_turns() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def settle(batch: Any) -> None:
            # on the loop's own thread: the settle may touch the loop's objects
            delivered, failed = batch.outcome()
            settled.append((delivered, [(token, str(error)) for token, error in failed],
                            dict(batch.offsets()), asyncio.get_running_loop() is loop))
            if len(settled) == 2:
                done.set()

        for token, partition, value in (("a", 0, b"0"), ("b", 7, b"lost"), ("c", 1, b"1"),
                                        ("d", 0, b"2")):
            producer.send_counted(topic, b"k", value, partition, [("h", b"1")], token,
                                  settle, track_offsets=True)
        await asyncio.sleep(0)  # the next loop turn: a second batch
        producer.send_counted(topic, None, b"3", 1, None, "e", settle, track_offsets=True)
        await asyncio.wait_for(done.wait(), 15)
        await asyncio.sleep(0.2)
        assert len(settled) == 2  # one settle per batch, never two

    try:
        asyncio.run(send_two_turns())
    finally:
        producer.close(10)
    [second] = [s for s in settled if s[0] == ["e"]]
    [first] = [s for s in settled if s is not second]
    assert first[0] == ["a", "c", "d"] and first[2] == {0: 1, 1: 0} and first[3]
    [(token, error)] = first[1]
    assert token == "b" and "partition" in error.lower()
    assert second[1] == [] and second[2] == {1: 1} and second[3]
    records = kafkatools.read_to_end(kafka_bootstrap, topic)
    assert sorted((r.partition, r.value) for r in records) == [
        (0, b"0"), (0, b"2"), (1, b"1"), (1, b"3")]
    assert all(r.headers == (("h", b"1"),) for r in records if r.value != b"3")


def test_forked_child_makes_its_own_producer(new_topic, kafka_bootstrap):
    topic = new_topic(partitions=1)
    producer = KafkaProducer(kafka_bootstrap)
    asyncio.run(producer.send(topic, None, b"parent"))   # the parent's handle now exists
    pid = os.fork()
    if pid == 0:  # child: the inherited handle's threads are gone; a send must still work
        status = 1
        try:
            asyncio.run(asyncio.wait_for(producer.send(topic, None, b"child"), 30))
            status = 0 if producer.close(10) == 0 else 2
        finally:
            os._exit(status)
    try:
        _, status = os.waitpid(pid, 0)
        asyncio.run(producer.send(topic, None, b"parent again"))
    finally:
        producer.close(10)
    assert os.waitstatus_to_exitcode(status) == 0
    values = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, topic)]
    assert values == [b"parent", b"child", b"parent again"]


def test_cancelled_send_leaves_other_sends_unaffected(new_topic, kafka_bootstrap):
    topic = new_topic(partitions=1)
    producer = KafkaProducer(kafka_bootstrap)

    async def send_and_cancel_one() -> list[int]:
        futures = [producer.send_soon(topic, None, b"%d" % i) for i in range(3)]
        futures[1].cancel()
        return [md.offset for md in await asyncio.gather(futures[0], futures[2])]

    try:
        assert asyncio.run(send_and_cancel_one()) == [0, 2]   # cancelling never unsends
    finally:
        producer.close(10)


def test_messages_queued_by_a_script_that_exits_at_once_are_delivered(new_topic, kafka_bootstrap):
    topic = new_topic(partitions=1)
    script = (
        "import asyncio\n"
        "from agentlib.kafka import KafkaProducer\n"
        f"producer = KafkaProducer({kafka_bootstrap!r})\n"
        "async def fire_and_forget():\n"
        f"    for i in range(100): producer.send_soon({topic!r}, None, b'%d' % i)\n"
        "asyncio.run(fire_and_forget())\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                   cwd=Path(__file__).resolve().parent.parent)
    values = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, topic)]
    assert values == [b"%d" % i for i in range(100)]


def test_close_reports_what_an_unreachable_broker_never_received():
    producer = KafkaProducer("127.0.0.1:1")   # nothing listens on port 1

    async def queue_two() -> list[asyncio.Future[object]]:
        return [producer.send_soon("nowhere", None, value) for value in (b"a", b"b")]

    futures = asyncio.run(queue_two())
    assert producer.close(0.5) == 2
    assert not any(future.done() for future in futures)


def test_send_waits_out_a_full_local_queue_while_send_soon_raises(new_topic, kafka_bootstrap):
    topic = new_topic(partitions=1)
    producer = KafkaProducer(kafka_bootstrap, config={"queue.buffering.max.messages": 5,
                                                      "linger.ms": 50})

    async def overfill() -> list[int]:
        with pytest.raises(BufferError):
            for i in range(6):
                producer.send_soon(topic, None, b"soon-%d" % i)
        sent = await asyncio.gather(*(producer.send(topic, None, b"%d" % i)
                                      for i in range(50)))
        return [metadata.offset for metadata in sent]

    try:
        offsets = asyncio.run(overfill())
    finally:
        producer.close(10)
    assert len(set(offsets)) == 50
    values = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, topic)]
    assert sorted(v for v in values if not v.startswith(b"soon")) == sorted(
        b"%d" % i for i in range(50))


def test_a_transactions_messages_are_reported_by_its_commit(new_topic, kafka_bootstrap):
    """``send_in_transaction`` asks for no delivery report: a commit that returns means
    every message was delivered (a read_committed reader sees them), and a message the
    broker refuses (larger than the topic allows) fails the commit, after which the
    aborted transaction shows nothing."""
    from confluent_kafka.admin import AdminClient, NewTopic

    small = kafkatools.unique_name("eos-small")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(small, 1, 1, config={"max.message.bytes": "2000"})])[
        small].result(30)
    kept = new_topic(partitions=2)
    producer = KafkaProducer(kafka_bootstrap, config={
        "transactional.id": kafkatools.unique_name("eos-report"), "linger.ms": 5})
    assert producer.transactional and not KafkaProducer(kafka_bootstrap).transactional
    handle = producer._ensure()
    try:
        handle.init_transactions(30)
        handle.begin_transaction()
        for value in (b"a", b"b", b"c"):
            producer.send_in_transaction(kept, None, value)
        handle.commit_transaction(30)
        handle.begin_transaction()
        producer.send_in_transaction(kept, None, b"aborted")
        producer.send_in_transaction(small, None, b"x" * 10_000)  # the broker refuses it
        with pytest.raises(KafkaException):
            handle.commit_transaction(30)
        handle.abort_transaction(30)
    finally:
        producer.close(10)
    assert sorted(kafkatools.read_committed_values(kafka_bootstrap, kept)) == [b"a", b"b", b"c"]
    assert kafkatools.read_committed_values(kafka_bootstrap, small) == []
