"""The instance's transactional producer under exactly once: what it is built with.
No broker for the configuration (read, not connected); the successor's skip of what
its predecessor committed against real Kafka."""

from __future__ import annotations

import asyncio
import collections
from types import SimpleNamespace
from typing import Any

import kafkatools
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from supervisor.instance import transactions as transactions_module
from supervisor.instance.transactions import (
    EXIT_TRANSACTION_FAILED,
    LINGER_MS,
    PROMPT_MAX_GAP_S,
    PROMPT_MIN_GAP_S,
    Transactions,
)


def fake_agent() -> SimpleNamespace:
    app = SimpleNamespace(conf=SimpleNamespace(broker="kafka://127.0.0.1:9"), _producer=None)
    return SimpleNamespace(app=app)


def test_exactly_once_gives_the_app_a_transactional_producer_that_batches():
    agent = fake_agent()
    txn = Transactions.install(agent, {"exactly_once": True, "transactional_id": "agentd-g-h-a-0",
                                       "commit_interval": 0.25})
    assert txn is not None and txn.interval == 0.25
    assert agent.app._producer is txn.producer
    config = txn.producer.config()
    assert config["transactional.id"] == "agentd-g-h-a-0"
    assert config["linger.ms"] == LINGER_MS > 0  # outputs wait for the commit anyway
    assert config["bootstrap.servers"] == "127.0.0.1:9"


def test_at_least_once_leaves_the_apps_producer_alone():
    agent = fake_agent()
    assert Transactions.install(agent, {"commit_interval": 0.25}) is None
    assert agent.app._producer is None


@pytest.mark.parametrize(("interval", "gap"), [(1.0, 0.1), (5.0, 0.5), (0.2, PROMPT_MIN_GAP_S),
                                                   (600.0, PROMPT_MAX_GAP_S)])
def test_an_instance_that_ran_dry_commits_early_at_most_every_tenth_interval(interval, gap):
    """Idle, with ACKs held: commit now if the least gap (interval / 10, never under
    0.1 s nor over 1 s) since the last commit passed, else once it has; busy or holding no ACK: the
    interval decides. Quiescing (the interval's commit): as soon as the agent is idle."""
    txn = Transactions(producer=None, interval=interval)
    assert txn.prompt_gap == gap
    opened = txn.opened_at
    txn.dry = True
    assert txn.commit_wait(True, opened + 10) is None  # nothing held
    txn.acks.append(b"ack")
    assert txn.commit_wait(False, opened + 10) is None  # the agent holds records
    assert txn.commit_wait(True, opened + gap) == 0.0
    assert txn.commit_wait(True, opened + gap / 4) == pytest.approx(gap * 3 / 4)
    txn.dry = False  # records in the ring: the interval decides
    assert txn.commit_wait(True, opened + 10) is None
    txn.due()
    assert txn.commit_wait(False, opened + 10) is None
    assert txn.commit_wait(True, opened) == 0.0


@pytest.mark.kafka
def test_a_successor_acks_unread_what_its_predecessor_committed(kafka_bootstrap, new_topic):
    """Fault row 21 saw 10 duplicates: an instance killed after commit_transaction
    returned but before its ACKs reached the supervisor. Its successor reads the
    group's committed offset for each partition it is given and skips what is below."""
    topic, group = new_topic(2), kafkatools.unique_name("eos-successor")
    committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    committer.close()
    agent = fake_agent()
    agent.app.conf.broker = f"kafka://{kafka_bootstrap}"
    txn = Transactions.install(agent, {"exactly_once": True, "commit_interval": 1.0,
                                       "transactional_id": f"{group}-0", "group_id": group})
    assert txn is not None
    try:
        txn.note_partition((0, 0), topic)
        txn.note_partition((0, 1), topic)  # nothing committed there: nothing skipped
        assert txn.skip_below == {(0, 0): 5}
        assert [txn.committed_below((0, 0), o) for o in (3, 4, 5, 6)] == \
            [True, True, False, False]
        assert txn.skip_below == {}  # past the committed offset: no more lookups
        assert not txn.committed_below((0, 1), 0)
    finally:
        txn.close()


def test_exactly_once_table_changelog_writes_go_through_the_transactional_producer(
        tmp_path, monkeypatch):
    """Changelog writes must commit with the outputs and offsets of the records that
    made them: under exactly once the table runtime uses the app's (transactional)
    producer, not the lingering changelog producer of at least once."""
    import agentlib
    from agentlib.tables import runtime as runtimes
    from supervisor.instance.tables import InstanceTables

    # InstanceTables.install installs its runtime for the whole process: put it back
    monkeypatch.setattr(runtimes, "_runtime", runtimes.current())

    app = agentlib.App("eos-tables", broker="kafka://127.0.0.1:9")
    app.Table("counts", default=int)

    @app.agent(app.topic("in"))
    async def count(stream):  # pragma: no cover (never run)
        async for _ in stream:
            pass

    settings = {"exactly_once": True, "transactional_id": "agentd-g-h-count-0"}
    tables = InstanceTables.install(count, str(tmp_path), exactly_once=True)
    txn = Transactions.install(count, settings)
    assert tables is not None and txn is not None
    assert tables.producer is None
    assert tables.runtime._producer() is app.producer is txn.producer
    alo = InstanceTables.install(count, str(tmp_path))
    assert alo is not None and alo.producer is not None
    assert alo.runtime._producer() is alo.producer is not app.producer


class FakeTxnHandle:
    """A transactional ``confluent_kafka.Producer`` stand-in: notes the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def send_offsets_to_transaction(self, offsets: Any, metadata: bytes, timeout: float) -> None:
        self.calls.append(("offsets", sorted((tp.topic, tp.partition, tp.offset)
                                             for tp in offsets)))

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append(("commit", None))

    def begin_transaction(self) -> None:
        self.calls.append(("begin", None))


def worker_under_exactly_once(loop: asyncio.AbstractEventLoop) -> tuple[Any, FakeTxnHandle]:
    """A Worker without rings or agent (as bench/sink_inproc.py builds one), its
    transactions started over :class:`FakeTxnHandle`, partition ("in", 0) known."""
    from supervisor.instance.worker import Worker

    worker = Worker.__new__(Worker)
    worker.outbound = SimpleNamespace(write_many=len)  # type: ignore[assignment]
    worker.topics, worker.topic_index = ["in"], {"in": 0}
    worker.host = SimpleNamespace(in_flight=0)
    worker.tables, worker.max_in_flight = None, 16
    worker._fed, worker._done, worker._done_by_name, worker._outbox = {}, {}, {}, []
    worker._flush_scheduled = worker._throttled = worker._stopping = False
    worker.processed, worker._loop = 0, loop
    worker._fed[(0, 0)], worker._done[(0, 0)] = collections.deque(), set()
    handle = FakeTxnHandle()
    txn = worker.txn = Transactions(producer=None, interval=60.0)
    txn.started, txn._handle, txn.group_metadata = True, handle, b"generation"
    return worker, handle


def test_the_interval_commit_includes_the_offsets_of_records_done_since_the_last_flush():
    """The agent went through its queue in one step (its outputs are queued in the open
    transaction) and the interval's timer fires before the flush its on_done scheduled:
    the commit must make their ACKs first, or it commits their outputs without their
    offsets, and a crash before the next commit repeats them (4,096 duplicates after a
    supervisor kill, tests/test_daemon_exactly_once.py)."""

    async def scenario() -> list[tuple[str, Any]]:
        worker, handle = worker_under_exactly_once(asyncio.get_running_loop())
        worker._fed[(0, 0)].extend(range(3))
        for offset in range(3):  # done, their ACK range not made yet
            worker.on_done(SimpleNamespace(topic="in", partition=0, offset=offset))
        worker._transaction_due()  # before the scheduled flush runs
        return handle.calls

    calls = asyncio.run(scenario())
    assert calls == [("offsets", [("in", 0, 3)]), ("commit", None), ("begin", None)]


class FlakyCall:
    """A transactional call that fails ``failures`` times with ``error``, then answers."""

    def __init__(self, error: Any, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0
        self.__name__ = "send_offsets_to_transaction"

    def __call__(self, *args: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(self.error)
        return "done"


class Exited(Exception):
    pass


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``os._exit`` raises instead (the instance's way out on a failed transaction)."""
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited(code)

    monkeypatch.setattr(transactions_module.os, "_exit", fake_exit)
    monkeypatch.setattr(transactions_module, "RESUME_PAUSE_S", 0.0)
    return codes


def test_a_call_failing_with_retriable_errors_is_resumed_not_the_instance_ended(exits):
    """librdkafka's "retry call to resume" (a coordinator still loading after a broker
    restart times the call out retriably): the same call again, no exit."""
    txn = Transactions(producer=None, interval=1.0, resume_for=30.0)
    txn._handle = SimpleNamespace(abort_transaction=lambda timeout: None)
    call = FlakyCall(KafkaError(KafkaError._TIMED_OUT, "coordinator loading", retriable=True), 3)
    assert txn._call(call, [], b"group", 10.0) == "done"
    assert call.calls == 4 and exits == []


@pytest.mark.parametrize("error", [
    KafkaError(KafkaError._FENCED, "fenced", fatal=True),
    KafkaError(KafkaError.INVALID_TXN_STATE, "abort it", txn_requires_abort=True),
    KafkaError(KafkaError._TIMED_OUT, "both", retriable=True, txn_requires_abort=True),
])
def test_an_abortable_or_fatal_error_ends_the_instance_at_once(exits, error):
    aborted: list[float] = []
    txn = Transactions(producer=None, interval=1.0, resume_for=30.0)
    txn._handle = SimpleNamespace(abort_transaction=aborted.append)
    call = FlakyCall(error, 1)
    with pytest.raises(Exited):
        txn._call(call, 10.0)
    assert call.calls == 1 and exits == [EXIT_TRANSACTION_FAILED] and aborted


def test_retriable_errors_end_the_instance_once_the_transaction_timeout_passed(exits):
    txn = Transactions(producer=None, interval=1.0, resume_for=0.05)
    txn._handle = SimpleNamespace(abort_transaction=lambda timeout: None)
    call = FlakyCall(KafkaError(KafkaError._TIMED_OUT, "still down", retriable=True), 10**9)
    with pytest.raises(Exited):
        txn._call(call, 10.0)
    assert call.calls >= 1 and exits == [EXIT_TRANSACTION_FAILED]
