"""Child side of the ask bench: ``client`` times asks, ``worker`` serves them with Faust.

``python bench/_ask_client.py client --sequential N --concurrent M --window W`` asks
``adding`` N times one after another (or until ``--phase-seconds`` passed), then M times
with W in flight, and reports the latencies (ms) with ``_common.report``. ``worker``
runs the Faust worker for the agent (agentd's side is ``agentd start``).
``BENCH_ASK_LIB`` picks the library (see _ask_app).

``echo-server`` and ``echo-client`` are the floor: the same request/reply round trip
with nothing but confluent-kafka (one consumer and one producer per side, producer
settings as agentlib's, linger.ms 0), so that what the broker and librdkafka cost
alone is known; the difference to the ``client`` rows is the runtime's own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

from _ask_app import LIB, Add, adding, app
from _common import percentiles, report

#: Unmeasured asks at a client's start: at least this many, for at least this long.
#: The first second of a new client is not the steady state the percentiles describe
#: (connections, metadata, and topics made for this run: on a broker whose log is on
#: disk their first offset-index pages fault in, which stalled asks ~33 ms a few
#: times in asks 50-150; see ``_common.LOG_DIR_PARENT``).
WARM_UP = 50
WARM_UP_SECONDS = 2.0


def latency_report(sequential: list[float], concurrent: list[float]) -> dict[str, Any]:
    """What a client reports of its two phases: percentiles, and every latency (µs
    resolution, in seconds) so that the parent can pool the rounds of a row."""
    return {"sequential": percentiles(sequential), "concurrent": percentiles(concurrent),
            "sequential_count": len(sequential),
            "sequential_s": [round(x, 6) for x in sequential],
            "concurrent_s": [round(x, 6) for x in concurrent]}


async def timed_ask(i: int, latencies: list[float]) -> None:
    started = time.perf_counter()
    answer = await adding.ask(Add(a=i, b=1))
    latencies.append(time.perf_counter() - started)
    if answer != i + 1:
        raise AssertionError(f"adding({i}, 1) answered {answer!r}")


async def client(args: argparse.Namespace) -> None:
    if hasattr(app, "start_client"):
        await app.start_client()
    warm: list[float] = []
    warm_until = time.monotonic() + WARM_UP_SECONDS
    while len(warm) < WARM_UP or time.monotonic() < warm_until:
        await asyncio.wait_for(timed_ask(len(warm), warm), 60)
    sequential: list[float] = []
    stop_at = time.monotonic() + args.phase_seconds
    for i in range(args.sequential):
        await timed_ask(i, sequential)
        if time.monotonic() > stop_at:  # a slow runtime: keep what was measured
            break
    concurrent: list[float] = []
    queue = iter(range(args.concurrent))

    async def lane() -> None:
        for i in queue:
            await timed_ask(i, concurrent)

    first = time.time()
    await asyncio.gather(*(lane() for _ in range(args.window)))
    last = time.time()
    # Where the asking library came from (bench/trees.py checks which tree asked).
    lib_dir = os.path.dirname(getattr(sys.modules[LIB], "__file__", None) or "")
    report(first, last, args.concurrent, lib=LIB, lib_dir=lib_dir,
           **latency_report(sequential, concurrent))
    os._exit(0)


def _echo_clients(group: str) -> tuple[Any, Any]:
    """A producer configured as agentlib's (linger 0) and a consumer.

    Nagle needs no setting: librdkafka 2.x sets TCP_NODELAY on every broker socket
    by default (seen with strace), so ``socket.nagle.disable`` changes nothing.
    """
    from confluent_kafka import Consumer, Producer

    from agentlib.kafka import PRODUCER_CONFIG, bootstrap_servers

    bootstrap = bootstrap_servers(os.environ.get("BENCH_BROKER"))
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "latest", "enable.auto.commit": False})
    return producer, consumer


def echo_server() -> None:
    """Answer each request on ``BENCH_TOPIC`` with its value, to ``<topic>-replies``."""
    topic = os.environ["BENCH_TOPIC"]
    producer, consumer = _echo_clients(f"{topic}-echo")
    consumer.subscribe([topic])
    while True:
        first = consumer.poll(0.05)
        if first is None:
            continue
        for msg in [first, *consumer.consume(1000, 0)]:
            if msg.error() is None:
                producer.produce(f"{topic}-replies", msg.value(), msg.key())
        producer.poll(0)


def echo_client(args: argparse.Namespace) -> None:
    """Time request/reply round trips through ``echo_server``: sequential, then windowed."""
    from confluent_kafka import TopicPartition

    topic = os.environ["BENCH_TOPIC"]
    producer, consumer = _echo_clients(f"{topic}-client-{uuid.uuid4().hex[:8]}")
    consumer.assign([TopicPartition(f"{topic}-replies", 0, -1)])  # OFFSET_END
    sent: dict[bytes, float] = {}

    def ask(i: int) -> None:
        key = str(i).encode()
        sent[key] = time.perf_counter()
        producer.produce(topic, b'{"a": %d, "b": 1}' % i, key)
        producer.poll(0)

    def replies(latencies: list[float], timeout: float) -> int:
        got = 0
        first = consumer.poll(timeout)
        if first is None:
            return 0
        for msg in [first, *consumer.consume(1000, 0)]:
            started = sent.pop(msg.key(), None) if msg.error() is None else None
            if started is not None:
                latencies.append(time.perf_counter() - started)
                got += 1
        return got

    def run(count: int, window: int, latencies: list[float], seconds: float) -> None:
        stop_at = time.monotonic() + seconds
        issued = 0
        while issued < min(window, count):
            ask(issued)
            issued += 1
        done = 0
        while done < issued and time.monotonic() < stop_at:
            got = replies(latencies, 1.0)
            done += got
            for _ in range(got):
                if issued < count and time.monotonic() < stop_at:
                    ask(issued)
                    issued += 1
        sent.clear()

    deadline = time.monotonic() + 60
    warm: list[float] = []
    warm_until = time.monotonic() + WARM_UP_SECONDS
    while ((len(warm) < WARM_UP or time.monotonic() < warm_until)
           and time.monotonic() < deadline):  # assignment, metadata
        run(1, 1, warm, 2.0)
    sequential: list[float] = []
    run(args.sequential, 1, sequential, args.phase_seconds)
    concurrent: list[float] = []
    first = time.time()
    run(args.concurrent, args.window, concurrent, args.phase_seconds)
    last = time.time()
    report(first, last, len(concurrent), lib="confluent-kafka",
           **latency_report(sequential, concurrent))
    os._exit(0)


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("role", choices=("client", "worker", "echo-server", "echo-client"))
    cli.add_argument("--sequential", type=int, default=10_000)
    cli.add_argument("--concurrent", type=int, default=10_000)
    cli.add_argument("--window", type=int, default=100)
    cli.add_argument("--phase-seconds", type=float, default=300.0,
                     help="end the sequential phase early after this long")
    args = cli.parse_args()
    if args.role == "echo-server":
        echo_server()
        return
    if args.role == "echo-client":
        echo_client(args)
        return
    if args.role == "worker":
        import faust

        faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
        return
    if LIB == "faust":
        loop: Any = app.loop  # Faust's clients must run on the app's own loop
        loop.run_until_complete(client(args))
    else:
        try:
            import uvloop

            uvloop.run(client(args))
        except ImportError:
            asyncio.run(client(args))


if __name__ == "__main__":
    main()
