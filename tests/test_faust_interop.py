"""Wire compatibility with a real faust-streaming worker over the real Kafka broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import kafkatools
from faustpeer import TESTS_DIR, FaustWorker

import agentlib
from agentlib.kafka import KafkaProducer
from agentlib.replies import ReplyConsumer
from examples.agent import Add, adding
from examples.agent import app as agent_app


def test_faust_worker_answers_a_request_made_with_agentlib_producer_and_replies(
        kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic(partitions=1)
    producer = KafkaProducer(kafka_bootstrap)
    replies = ReplyConsumer(kafka_bootstrap)

    async def ask() -> Any:
        await replies.start()
        correlation_id = str(uuid.uuid4())
        future = replies.expect(correlation_id)
        value = {"a": 4, "b": 8, "__faust": {"ns": "examples.agent.Add"}}
        await producer.send(topic, None, json.dumps(value).encode(), headers=[
            ("Faust-Ag-ReplyTo", replies.topic.encode()),
            ("Faust-Ag-CorrelationId", correlation_id.encode())])
        return await asyncio.wait_for(future, 120)

    try:
        with FaustWorker(kafka_bootstrap, kafkatools.unique_name("peer"), tmp_path, adding=topic):
            assert asyncio.run(ask()) == 12
    finally:
        producer.close(10)
        replies.close()


def _records(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None, tuple]]:
    return [(r.key, r.value, r.headers) for r in kafkatools.read_to_end(bootstrap, topic)]


def test_agentlib_requests_are_byte_identical_to_fausts(kafka_bootstrap, new_topic):
    """Same send (key, Record value, reply_to, correlation_id) through an agent with reply
    headers and one with the envelope: same key, value bytes and headers as Faust's."""
    faust_headers, faust_envelope = new_topic(partitions=1), new_topic(partitions=1)
    subprocess.run([sys.executable, str(TESTS_DIR / "faust_send_requests.py"),
                    f"kafka://{kafka_bootstrap}", faust_headers, faust_envelope],
                   check=True, timeout=120, capture_output=True)

    ours_headers, ours_envelope = new_topic(partitions=1), new_topic(partitions=1)
    app = agentlib.App("agentlib-requests", broker=f"kafka://{kafka_bootstrap}")

    async def add(stream: agentlib.StreamT[Add]) -> AsyncIterator[int]:
        async for value in stream:
            yield value.a + value.b

    with_headers = app.agent(app.topic(ours_headers, value_type=Add), name="h")(add)
    with_envelope = app.agent(app.topic(ours_envelope, value_type=Add), name="e",
                              use_reply_headers=False)(add)

    async def send_both() -> None:
        for agent in (with_headers, with_envelope):
            await agent.send(key=b"k", value=Add(a=4, b=8), reply_to="f-reply-fixed",
                             correlation_id="cid-1")
        await app.stop_clients()

    asyncio.run(send_both())
    assert _records(kafka_bootstrap, ours_headers) == _records(kafka_bootstrap, faust_headers)
    assert _records(kafka_bootstrap, ours_envelope) == _records(kafka_bootstrap, faust_envelope)


def test_agentlib_replies_are_byte_identical_to_fausts(kafka_bootstrap, new_topic, tmp_path,
                                                       monkeypatch):
    """The same request answered by a Faust worker and by the agentlib agent: the replies
    on the reply topics (key, value bytes, headers) are identical."""
    topic, faust_replies, our_replies = (new_topic(partitions=1) for _ in range(3))
    request = Add(a=4, b=8)
    with FaustWorker(kafka_bootstrap, kafkatools.unique_name("peer"), tmp_path, adding=topic):
        kafkatools.produce(kafka_bootstrap, topic, [(None, request.dumps(), [
            ("Faust-Ag-ReplyTo", faust_replies.encode()),
            ("Faust-Ag-CorrelationId", b"cid-7")])])
        deadline = time.monotonic() + 120
        while not kafkatools.end_offsets(kafka_bootstrap, faust_replies).get(0):
            assert time.monotonic() < deadline, "the Faust worker never replied"
            time.sleep(0.2)

    monkeypatch.setenv("AGENTD_BROKER", kafka_bootstrap)

    async def answer_in_agentlib() -> None:
        async with adding.test_context() as agent:
            await agent.put(request, reply_to=our_replies, correlation_id="cid-7")
        await agent_app.stop_clients()

    asyncio.run(answer_in_agentlib())
    assert _records(kafka_bootstrap, our_replies) == _records(kafka_bootstrap, faust_replies)
