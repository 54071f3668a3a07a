"""Wire compatibility with a real faust-streaming worker over the real Kafka broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import kafkatools
from faustpeer import FaustWorker

from agentlib.kafka import KafkaProducer
from agentlib.replies import ReplyConsumer


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
