"""Every ``ask`` through a running agentd gets its own answer, one after another and
many in flight, on the real broker.

The client is agentlib in this process (its producer and reply consumer); the agent
runs in an agentd worker. A lost reply would surface as that ask's hang-guard
timeout, a crossed correlation id as a wrong sum. The round trip is printed, never
asserted (these machines are shared): ``bench/ask.py`` measures it.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import kafkatools
import pytest
from agentdproc import Agentd

import agentlib as faust

SEQUENTIAL = 300
CONCURRENT = 300
IN_FLIGHT = 50
#: Not a latency bound: only how long one lost ask may hang the test before failing.
HANG_GUARD = 30.0

AGENTD_SIDE = """
import os
import agentlib as faust

app = faust.App("ask-app")


class Add(faust.Record, namespace="daemon_ask.Add"):
    a: int
    b: int


@app.agent(app.topic(os.environ["ASK_TOPIC"], value_type=Add))
async def adding(stream):
    async for value in stream:
        yield value.a + value.b
"""


class Add(faust.Record, namespace="daemon_ask.Add"):
    a: int
    b: int


def percentile(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def ask_all(bootstrap: str, topic: str) -> tuple[list[float], list[float]]:
    """Ask ``SEQUENTIAL`` times one after another, then ``CONCURRENT`` times with
    ``IN_FLIGHT`` in flight; check every answer; the latencies of each phase."""
    app = faust.App("ask-client", broker=f"kafka://{bootstrap}")

    @app.agent(app.topic(topic, value_type=Add))
    async def adding(stream):  # type: ignore[no-untyped-def]  # client side: never run
        async for value in stream:
            yield value

    async def timed_ask(i: int, latencies: list[float]) -> None:
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(adding.ask(Add(a=i, b=1000)), HANG_GUARD)
        except TimeoutError:
            raise AssertionError(f"ask #{i} got no answer within {HANG_GUARD:.0f}s "
                                 f"({len(latencies)} answered before it)") from None
        latencies.append(time.perf_counter() - started)
        assert answer == i + 1000, f"ask #{i} got {answer!r}, another ask's answer?"

    try:
        sequential: list[float] = []
        for i in range(SEQUENTIAL):
            await timed_ask(i, sequential)
        concurrent: list[float] = []
        queue = iter(range(CONCURRENT))

        async def lane() -> None:
            for i in queue:
                await timed_ask(i, concurrent)

        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
        return sequential, concurrent
    finally:
        await app.stop_clients()
        app.producer.close(5.0)   # not left to reconnect to the broker after the session


@pytest.mark.kafka
def test_every_ask_through_agentd_gets_its_answer(kafka_bootstrap, new_topic, tmp_path,
                                                  monkeypatch):
    monkeypatch.delenv("AGENTD_BROKER", raising=False)
    topic = new_topic(4)
    settings = {"app": "asked:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("asked")}
    with Agentd(tmp_path, settings, modules={"asked": AGENTD_SIDE},
                env={"ASK_TOPIC": topic}) as daemon:
        daemon.wait_consuming()
        sequential, concurrent = asyncio.run(ask_all(kafka_bootstrap, topic))
        assert daemon.stop() == 0
    assert len(sequential) == SEQUENTIAL and len(concurrent) == CONCURRENT
    warm = sequential[10:]   # the first asks also connect and create the reply topic
    print(f"\n{SEQUENTIAL} sequential asks: p50 {percentile(warm, 0.5):.1f} ms, "
          f"p99 {percentile(warm, 0.99):.1f} ms, mean {statistics.mean(warm) * 1000:.1f} ms;"
          f" {CONCURRENT} at {IN_FLIGHT} in flight: p50 {percentile(concurrent, 0.5):.1f} ms,"
          f" p99 {percentile(concurrent, 0.99):.1f} ms")
