"""The guide's examples against the real broker: client mode and sinks that produce.

Client mode: ``python -m examples.agent send_value 4 8 --print``, the
``send_to_agent`` script and ``pow2``'s ask/map/kvmap/join/kvjoin run as plain
processes (a producer and a reply consumer, no agents of their own) against a
faust-streaming worker that serves the same agents, so these tests also prove the
two libraries understand each other's requests, replies and records.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import kafkatools
import pytest
from confluent_kafka import KafkaException
from faustpeer import FaustWorker

import agentlib
from examples import concurrency, pow2, sinks

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def faust_peer(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[FaustWorker]:
    """One Faust worker serving ``adding``, ``pow2`` and an Article round trip."""
    [pow2_topic] = pow2.pow2.topic_names()
    suffix = uuid.uuid4().hex[:8]
    with FaustWorker(kafka_bootstrap, f"faust-peer-{suffix}", tmp_path_factory.mktemp("faust"),
                     adding="adding", pow2=pow2_topic, articles=f"articles-{suffix}",
                     articles_sink=f"articles-out-{suffix}") as worker:
        yield worker


def run_client(kafka_bootstrap: str, *args: str) -> str:
    """Run ``python -m ARGS`` as a client of the test broker; its stdout."""
    env = {**os.environ, "AGENTD_BROKER": f"kafka://{kafka_bootstrap}"}
    # A hang shows its stacks: faulthandler dumps them and exits before our timeout.
    command = [sys.executable, "-X", "faulthandler", "-c",
               "import faulthandler, runpy, sys; faulthandler.dump_traceback_later(150, "
               "exit=True); sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], "
               "run_name='__main__', alter_sys=True)", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-6000:]}"
    return done.stdout


def wait_for_records(bootstrap: str, topic: str, within: float = 120.0
                     ) -> list[kafkatools.Record]:
    """What ``topic`` holds once it holds something (the Faust worker writes it)."""
    deadline = time.monotonic() + within
    while True:
        try:
            records = kafkatools.read_to_end(bootstrap, topic)
        except KafkaException:   # not created yet, or no leader yet
            records = []
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def test_send_value_command_asks_the_adding_agent(kafka_bootstrap, faust_peer):
    out = run_client(kafka_bootstrap, "examples.agent", "send_value", "4", "8", "--print")
    assert out == "Sending Add(4, 8)...\n12\n"
    out = run_client(kafka_bootstrap, "examples.agent", "send_value", "1", "2", "--no-print")
    assert out == "3\n"


def test_send_to_agent_script_gets_the_sum(kafka_bootstrap, faust_peer):
    assert run_client(kafka_bootstrap, "examples.send_to_agent") == "8\n"


def test_pow2_map_kvmap_join_kvjoin_over_kafka(kafka_bootstrap, faust_peer):
    lines = run_client(kafka_bootstrap, "examples.pow2", "square_all").splitlines()
    squares = [n * n for n in pow2.NUMBERS]
    streamed = sorted(int(line.removeprefix("RECEIVED REPLY: ")) for line in lines[:-1])
    assert streamed == sorted(squares + squares)   # map, then kvmap: any order
    assert lines[-1] == str(squares)                # join keeps input order


def test_records_round_trip_between_agentlib_and_faust(kafka_bootstrap, faust_peer):
    """agentlib produces an isodates Article; Faust decodes it, re-encodes its own
    Article into a sink topic; agentlib decodes Faust's bytes."""
    published = datetime(2024, 5, 17, 10, 30, 5, 123000, tzinfo=UTC)
    app = agentlib.App("records-round-trip", broker=f"kafka://{kafka_bootstrap}")
    outbound = app.topic(faust_peer.topics["articles"], value_type=concurrency.Article)
    inbound = app.topic(faust_peer.topics["articles_sink"], value_type=concurrency.Article)

    async def send() -> None:
        await outbound.send(value=concurrency.Article(url="https://e.x/a",
                                                      date_published=published))
        await app.stop_clients()

    asyncio.run(send())
    [record] = wait_for_records(kafka_bootstrap, inbound.get_topic_name())
    article = inbound.decode_value(inbound.load_value(record.value))
    assert article == concurrency.Article(url="HTTPS://E.X/A", date_published=published)


def test_topic_and_agent_sinks_produce_what_the_agent_yields(kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("AGENTD_BROKER", kafka_bootstrap)
    marker = int(uuid.uuid4().int % 1_000_000)

    async def run() -> None:
        async with sinks.myagent_topic_sink.test_context() as agent:
            await agent.put(marker)        # done only after the delivery report
        async with sinks.agent_a.test_context() as agent:
            await agent.put(marker)
        await sinks.app.stop_clients()

    asyncio.run(run())
    logged = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, "agent_log")]
    assert str(marker).encode() in logged
    [agent_b_topic] = sinks.agent_b.topic_names()
    forwarded = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, agent_b_topic)]
    assert str(marker * 2).encode() in forwarded


def test_asking_a_faust_agent_that_yields_records_returns_agentlib_records(
        kafka_bootstrap, faust_peer):
    """Faust wraps a Record reply as ``ModelReqRepResponse``; the asker gets its own
    Record class back, dates parsed."""
    published = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    app = agentlib.App("records-ask", broker=f"kafka://{kafka_bootstrap}")

    async def articles(stream: agentlib.StreamT[concurrency.Article]
                       ) -> AsyncIterator[concurrency.Article]:
        async for article in stream:   # never runs here: the Faust worker answers
            yield article

    faust_articles = app.agent(app.topic(faust_peer.topics["articles"],
                                         value_type=concurrency.Article))(articles)

    async def ask() -> object:
        try:
            return await asyncio.wait_for(faust_articles.ask(
                concurrency.Article(url="https://e.x/b", date_published=published)), 120)
        finally:
            await app.stop_clients()

    assert asyncio.run(ask()) == concurrency.Article(url="HTTPS://E.X/B",
                                                     date_published=published)
