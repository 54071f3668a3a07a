"""agentlib.replies: one reply topic per process, futures settled by correlation id.

Replies are produced here the way a Faust agent produces them: the bytes come from
faust-streaming's own ``ReqRepResponse`` model.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kafkatools
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from faust.agents.models import ReqRepResponse

from agentlib.replies import ReplyConsumer, ReplyConsumerStopped
from supervisor.devbrokers.embedded import EmbeddedBroker


def faust_reply(correlation_id: str, value: Any, key: Any = None) -> bytes:
    """A reply exactly as a Faust agent writes it to the reply topic."""
    return ReqRepResponse(key=key, value=value, correlation_id=correlation_id).dumps()


def topic_exists(bootstrap: str, topic: str) -> bool:
    return topic in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics


def topic_deleted(bootstrap: str, topic: str, within: float = 15.0) -> bool:
    """Whether ``topic`` disappears from metadata (deletion reaches brokers shortly after
    the controller acknowledged it)."""
    deadline = time.monotonic() + within
    while topic_exists(bootstrap, topic):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_replies_settle_the_future_with_their_correlation_id(kafka_bootstrap):
    replies = ReplyConsumer(f"kafka://{kafka_bootstrap}")

    async def ask_twice() -> list[Any]:
        await replies.start()
        first, second = replies.expect("cid-1"), replies.expect("cid-2")
        kafkatools.produce(kafka_bootstrap, replies.topic, [
            (None, faust_reply("cid-2", {"sum": 2})),
            (None, b"not json at all"),
            (None, faust_reply("someone-else", 99)),
            (None, faust_reply("cid-1", 1)),
            (None, faust_reply("cid-1", "a second yield for cid-1 is ignored")),
        ])
        return await asyncio.wait_for(asyncio.gather(first, second), 30)

    try:
        assert asyncio.run(ask_twice()) == [1, {"sum": 2}]
    finally:
        replies.close()


def test_reply_topic_is_faust_shaped_one_partition_one_day(kafka_bootstrap):
    replies = ReplyConsumer(kafka_bootstrap)
    try:
        asyncio.run(replies.start())
        assert replies.topic.startswith("f-reply-")
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        meta = admin.list_topics(replies.topic, timeout=10).topics[replies.topic]
        assert list(meta.partitions) == [0]
        resource = ConfigResource(ConfigResource.Type.TOPIC, replies.topic)
        configs = admin.describe_configs([resource])[resource].result(10)
        assert configs["retention.ms"].value == "86400000"
        assert configs["cleanup.policy"].value == "delete"
    finally:
        replies.close()


def test_a_reply_written_before_the_consumer_is_assigned_is_not_lost(kafka_bootstrap):
    replies = ReplyConsumer(kafka_bootstrap)

    async def reply_lands_first() -> Any:
        await replies.start()
        # The agent may answer before the consumer's first fetch: reading a fresh
        # topic from its beginning finds the reply anyway.
        kafkatools.produce(kafka_bootstrap, replies.topic, [(None, faust_reply("early", 8))])
        await asyncio.sleep(0)
        return await asyncio.wait_for(replies.expect("early"), 30)

    try:
        assert asyncio.run(reply_lands_first()) == 8
    finally:
        replies.close()


def test_an_existing_reply_topic_is_read_from_its_end(kafka_bootstrap, new_topic):
    topic = new_topic(partitions=2)
    kafkatools.produce(kafka_bootstrap, topic, [(None, faust_reply("cid", "old"))])
    replies = ReplyConsumer(kafka_bootstrap, topic=topic)

    async def ask() -> Any:
        await replies.start()
        future = replies.expect("cid")
        kafkatools.produce(kafka_bootstrap, topic, [(None, faust_reply("cid", "new"))],
                           partition=1)
        return await asyncio.wait_for(future, 30)

    try:
        assert asyncio.run(ask()) == "new"
    finally:
        replies.close()
    assert topic_exists(kafka_bootstrap, topic), "a topic it did not create is never deleted"


def test_decode_value_turns_reply_values_into_models(kafka_bootstrap):
    replies = ReplyConsumer(kafka_bootstrap, decode_value=lambda v: ("decoded", v))

    async def ask() -> Any:
        await replies.start()
        future = replies.expect("cid")
        kafkatools.produce(kafka_bootstrap, replies.topic, [(None, faust_reply("cid", 3))])
        return await asyncio.wait_for(future, 30)

    try:
        assert asyncio.run(ask()) == ("decoded", 3)
    finally:
        replies.close()


def test_stop_fails_waiting_requests_and_deletes_an_unused_topic(kafka_bootstrap):
    replies = ReplyConsumer(kafka_bootstrap)

    async def stop_while_waiting() -> None:
        await replies.start()
        answered = replies.expect("answered")
        kafkatools.produce(kafka_bootstrap, replies.topic, [(None, faust_reply("answered", 1))])
        await asyncio.wait_for(answered, 30)
        waiting = replies.expect("never answered")
        await replies.stop()
        with pytest.raises(ReplyConsumerStopped):
            await asyncio.wait_for(waiting, 10)

    asyncio.run(stop_while_waiting())
    # One request was abandoned at stop: its late reply must not re-create the topic
    # by auto-creation, so the topic stays (retention empties it).
    assert topic_exists(kafka_bootstrap, replies.topic)

    clean = ReplyConsumer(kafka_bootstrap)

    async def answer_all_then_stop() -> None:
        await clean.start()
        future = clean.expect("cid")
        kafkatools.produce(kafka_bootstrap, clean.topic, [(None, faust_reply("cid", 1))])
        await asyncio.wait_for(future, 30)
        await clean.stop()

    asyncio.run(answer_all_then_stop())
    assert topic_deleted(kafka_bootstrap, clean.topic)


def test_start_is_idempotent_and_concurrent_starts_share_one_consumer(kafka_bootstrap):
    replies = ReplyConsumer(kafka_bootstrap)

    async def start_many() -> Any:
        await asyncio.gather(*(replies.start() for _ in range(5)))
        future = replies.expect("cid")
        kafkatools.produce(kafka_bootstrap, replies.topic, [(None, faust_reply("cid", 5))])
        return await asyncio.wait_for(future, 30)

    try:
        assert asyncio.run(start_many()) == 5
        assert sum(t.name == "agentlib-replies" for t in threading.enumerate()) == 1
    finally:
        replies.close()


def test_reply_topic_falls_back_to_auto_creation_on_the_embedded_broker():
    # librdkafka's mock cluster has no controller: create_topics times out there.
    with EmbeddedBroker() as broker:
        replies = ReplyConsumer(broker.bootstrap, create_timeout=1.0)

        async def ask() -> Any:
            await replies.start()
            future = replies.expect("cid")
            kafkatools.produce(broker.bootstrap, replies.topic,
                               [(None, faust_reply("cid", "via auto-created topic"))])
            return await asyncio.wait_for(future, 30)

        try:
            assert asyncio.run(ask()) == "via auto-created topic"
        finally:
            replies.close(timeout=2.0)


def test_a_script_that_never_stops_its_replies_still_deletes_the_topic_at_exit(
        kafka_bootstrap, tmp_path):
    script = (
        "import asyncio, sys\n"
        "from agentlib.replies import ReplyConsumer\n"
        f"replies = ReplyConsumer({kafka_bootstrap!r})\n"
        "asyncio.run(replies.start())\n"
        "print(replies.topic)\n")
    done = subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                          capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    topic = done.stdout.strip()
    assert topic.startswith("f-reply-")
    assert topic_deleted(kafka_bootstrap, topic)


def test_a_forked_child_reads_its_own_reply_topic(kafka_bootstrap):
    replies = ReplyConsumer(kafka_bootstrap)
    asyncio.run(replies.start())
    parent_topic = replies.topic
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's consumer thread did not survive the fork
        status = 1
        try:
            async def ask_in_child() -> Any:
                await replies.start()
                future = replies.expect("child-cid")
                kafkatools.produce(kafka_bootstrap, replies.topic,
                                   [(None, faust_reply("child-cid", "child"))])
                return await asyncio.wait_for(future, 30)

            answer = asyncio.run(ask_in_child())
            os.write(write, f"{replies.topic} {answer}".encode())
            replies.close()
            status = 0
        finally:
            os._exit(status)
    try:
        _, status = os.waitpid(pid, 0)
        child_topic, answer = os.read(read, 1000).decode().split()
    finally:
        replies.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert (answer, child_topic != parent_topic) == ("child", True)


def test_a_stopped_reply_consumer_starts_again_on_a_fresh_topic(kafka_bootstrap):
    replies = ReplyConsumer(kafka_bootstrap)

    async def ask_once(value: str) -> tuple[str, Any]:
        await replies.start()
        future = replies.expect(value)
        kafkatools.produce(kafka_bootstrap, replies.topic, [(None, faust_reply(value, value))])
        answer = await asyncio.wait_for(future, 30)
        topic = replies.topic
        await replies.stop()
        return topic, answer

    first_topic, first = asyncio.run(ask_once("first"))
    second_topic, second = asyncio.run(ask_once("second"))
    assert (first, second) == ("first", "second")
    assert first_topic != second_topic
    assert not replies.started


def test_a_fixed_reply_topic_it_created_is_kept(kafka_bootstrap):
    """``App(reply_to=...)`` names a topic other processes may read too: as in Faust,
    it outlives this consumer even when this consumer created it."""
    topic = kafkatools.unique_name("fixed-reply")
    replies = ReplyConsumer(kafka_bootstrap, topic=topic)

    async def start() -> None:
        await replies.start()
    try:
        asyncio.run(start())
        assert topic_exists(kafka_bootstrap, topic)
    finally:
        replies.close()
    assert topic_exists(kafka_bootstrap, topic), "a fixed reply topic is never deleted"
