"""Child side of the benches: one contestant reads the topic and reports its timestamps.

``python bench/_contestants.py KIND --bootstrap B --topic T --group G --count N``
runs in agentd's venv (``bare``, ``faust``, ``faust_table``) or in a peer's venv
(``quix``, ``quix_state``, ``quix_eos``, ``arroyo_mp``, ``arroyo_single``): only the
standard library and ``_common`` (stdlib at import time) are imported at the top, each
library only inside its own contestant.

Every contestant does the same step per message: decode the JSON value, then ``burn``
``--work`` iterations (0 for the throughput bench); ``faust_table`` and ``quix_state``
(``bench/tables.py``) add one to the record key's count in their table instead;
``quix_eos`` (``bench/eos.py``) forwards the value to a sink topic, exactly once. It
notes the wall-clock time of its first processed message and of its N-th, prints them
with ``_common.report`` and leaves with ``os._exit`` (Faust's and Quix's shutdowns can
hang; the parent's timeout is the last resort). The parent computes the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

from _common import burn, report


class Tally:
    """Counts processed messages; reports and exits at the N-th."""

    def __init__(self, expect: int, **extra: Any) -> None:
        self.expect = expect
        self.count = 0
        self.first = 0.0
        self.extra = extra

    def done(self, n: int = 1) -> None:
        if self.count == 0:
            self.first = time.time()
        self.count += n
        if self.count >= self.expect:
            report(self.first, time.time(), self.count, **self.extra)
            os._exit(0)


def run_bare(args: argparse.Namespace, tuned: bool = False) -> None:
    """The practical ceiling of one Python process: consume(500), json.loads, async commit 1/s.

    ``tuned``: with agentd's consumer tuning (``supervisor.daemon.membership.CONSUMER_TUNING``), so
    the report shows what of agentd's lead over the default loop is that setting alone.
    """
    from confluent_kafka import Consumer

    settings = {"bootstrap.servers": args.bootstrap, "group.id": args.group,
                "auto.offset.reset": "earliest", "enable.auto.commit": False}
    if tuned:
        from supervisor.daemon.membership import CONSUMER_TUNING
        settings.update(CONSUMER_TUNING)
    consumer = Consumer(settings)
    consumer.subscribe([args.topic])
    tally, work, loads = Tally(args.count), args.work, json.loads
    last_commit = time.monotonic()
    while True:
        batch = consumer.consume(500, 1.0)
        for msg in batch:
            if msg.error() is None:
                loads(msg.value())
                if work:
                    burn(work)
        if batch:
            if time.monotonic() - last_commit >= 1.0:
                consumer.commit(asynchronous=True)
                last_commit = time.monotonic()
            tally.done(len(batch))


def run_faust(args: argparse.Namespace) -> None:
    """faust-streaming worker, one agent on a Record, started in this process."""
    import faust

    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", value_serializer="json",
                    consumer_auto_offset_reset="earliest", web_enabled=False,
                    datadir=tempfile.mkdtemp(prefix="bench-faust-"), topic_partitions=8)

    class Event(faust.Record, serializer="json"):
        id: int
        account: str
        amount: float
        currency: str
        kind: str
        ts: int

    topic = app.topic(args.topic, value_type=Event, partitions=8)
    tally, work = Tally(args.count, concurrency=args.concurrency), args.work

    @app.agent(topic, concurrency=args.concurrency)
    async def process(stream: Any) -> None:
        async for _event in stream:
            if work:
                burn(work)
            tally.done()

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def run_quix(args: argparse.Namespace) -> None:
    """Quix Streams Application, a StreamingDataFrame with the same step, library defaults."""
    from quixstreams import Application

    app = Application(broker_address=args.bootstrap, consumer_group=args.group,
                      auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="bench-qx-"),
                      loglevel="WARNING")
    topic = app.topic(args.topic, value_deserializer="json")
    tally, work = Tally(args.count), args.work

    def step(value: Any) -> None:
        if work:
            burn(work)
        tally.done()

    app.dataframe(topic).update(step)
    app.run()


def run_faust_table(args: argparse.Namespace) -> None:
    """``bench/tables.py``: a Faust agent counting per record key in a ``Table`` whose
    store is ``--store`` (Faust's ``rocksdb://`` runs on rocksdict when python-rocksdb
    is absent; ``memory://`` is Faust's default)."""
    import faust

    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", value_serializer="json",
                    consumer_auto_offset_reset="earliest", web_enabled=False,
                    datadir=tempfile.mkdtemp(prefix="bench-faust-"), topic_partitions=8,
                    store=args.store)
    topic = app.topic(args.topic, partitions=8)  # raw keys (the app's default), JSON values
    counts = app.Table("counts", default=int, partitions=8)
    tally = Tally(args.count, store=args.store)

    @app.agent(topic)
    async def process(stream: Any) -> None:
        async for event in stream.events():
            counts[event.key] += 1
            tally.done()

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


def run_quix_state(args: argparse.Namespace) -> None:
    """``bench/tables.py``: Quix Streams counting per message key in its ``State``
    (RocksDB with a changelog topic: the library's defaults)."""
    from quixstreams import Application

    app = Application(broker_address=args.bootstrap, consumer_group=args.group,
                      auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="bench-qx-"),
                      loglevel="WARNING")
    topic = app.topic(args.topic, value_deserializer="json")
    tally = Tally(args.count)

    def step(value: Any, state: Any) -> None:
        state.set("count", state.get("count", 0) + 1)  # Quix scopes state to the key
        tally.done()

    app.dataframe(topic).update(step, stateful=True)
    app.run()


def run_quix_eos(args: argparse.Namespace) -> None:
    """``bench/eos.py``: Quix Streams under ``processing_guarantee="exactly-once"``
    (a transactional producer, offsets committed in the checkpoint's transaction every
    ``commit_interval``, the library's default 5 s) forwarding each value to
    ``--sink`` with ``StreamingDataFrame.to_topic``. Counted when the step sees the
    message, before its produce: the clock stops ahead of the output's commit."""
    from quixstreams import Application

    app = Application(broker_address=args.bootstrap, consumer_group=args.group,
                      auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="bench-qx-"),
                      loglevel="WARNING", processing_guarantee="exactly-once")
    topic = app.topic(args.topic, value_deserializer="json")
    sink = app.topic(args.sink, value_serializer="json")
    tally = Tally(args.count, guarantee="exactly-once")

    def step(value: Any) -> None:
        tally.done()

    sdf = app.dataframe(topic)
    sdf.update(step)
    sdf.to_topic(sink)
    app.run()


def _decode(message: Any) -> Any:
    """arroyo's task: json.loads of the payload (module level, so the pool can pickle it)."""
    value = json.loads(message.payload.value)
    if _WORK:
        burn(_WORK)
    return value


_WORK = int(os.environ.get("BENCH_WORK", "0"))


def run_arroyo(args: argparse.Namespace, processes: int) -> None:
    """StreamProcessor: RunTask (or RunTaskWithMultiprocessing) → count → CommitOffsets."""
    from arroyo.backends.kafka import KafkaConsumer, build_kafka_consumer_configuration
    from arroyo.processing import StreamProcessor
    from arroyo.processing.strategies import CommitOffsets, ProcessingStrategy, RunTask
    from arroyo.processing.strategies.abstract import ProcessingStrategyFactory
    from arroyo.types import Topic

    tally = Tally(args.count, processes=processes)

    class CountStep(ProcessingStrategy[Any]):
        """Counts what the task step finished, then forwards to CommitOffsets."""

        def __init__(self, next_step: ProcessingStrategy[Any]) -> None:
            self.next_step = next_step

        def submit(self, message: Any) -> None:
            self.next_step.submit(message)
            tally.done()

        def poll(self) -> None:
            self.next_step.poll()

        def join(self, timeout: float | None = None) -> None:
            self.next_step.join(timeout)

        def close(self) -> None:
            self.next_step.close()

        def terminate(self) -> None:
            self.next_step.terminate()

    class Factory(ProcessingStrategyFactory[Any]):
        def __init__(self) -> None:
            self.pool: Any = None

        def create_with_partitions(self, commit: Any, partitions: Any) -> Any:
            counted = CountStep(CommitOffsets(commit))
            if processes <= 1:
                return RunTask(_decode, counted)
            from arroyo.processing.strategies.run_task_with_multiprocessing import (
                MultiprocessingPool,
                RunTaskWithMultiprocessing,
            )

            if self.pool is None:
                self.pool = MultiprocessingPool(num_processes=processes)
            return RunTaskWithMultiprocessing(_decode, counted, max_batch_size=1000,
                                              max_batch_time=1.0, pool=self.pool)

    consumer = KafkaConsumer(build_kafka_consumer_configuration(
        {}, bootstrap_servers=[args.bootstrap], auto_offset_reset="earliest",
        group_id=args.group))
    processor = StreamProcessor(consumer, Topic(args.topic), Factory())
    processor.run()


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("kind", choices=("bare", "bare_tuned", "faust", "quix", "arroyo_mp",
                                      "arroyo_single", "faust_table", "quix_state", "quix_eos"))
    cli.add_argument("--bootstrap", required=True)
    cli.add_argument("--topic", required=True)
    cli.add_argument("--group", required=True)
    cli.add_argument("--count", type=int, required=True)
    cli.add_argument("--work", type=int, default=_WORK, help="burn iterations per message")
    cli.add_argument("--concurrency", type=int, default=1, help="Faust agent concurrency")
    cli.add_argument("--store", default="memory://", help="faust_table: the Table's store")
    cli.add_argument("--sink", default="", help="quix_eos: the output topic")
    args = cli.parse_args()
    if args.kind in ("bare", "bare_tuned"):
        run_bare(args, tuned=args.kind == "bare_tuned")
    elif args.kind == "faust":
        run_faust(args)
    elif args.kind == "quix":
        run_quix(args)
    elif args.kind == "faust_table":
        run_faust_table(args)
    elif args.kind == "quix_state":
        run_quix_state(args)
    elif args.kind == "quix_eos":
        run_quix_eos(args)
    else:
        run_arroyo(args, 2 if args.kind == "arroyo_mp" else 1)
    raise SystemExit(f"{args.kind} returned before processing {args.count} messages")


if __name__ == "__main__":
    main()
