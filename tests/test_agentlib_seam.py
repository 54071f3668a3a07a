"""The agentlib seam (docs/architecture.md, "agentlib seam"), with an in-memory feeder.

No broker: topic sinks and replies go to a FakeProducer whose deliveries the test
completes by hand, which is how "done waits for the delivery report" is observed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agentlib_fakes import FakeProducer, Feeder, counting_producer, raw

import agentlib
from agentlib.seam import AgentHost, ErrorVerdict, RawRecord


class Add(agentlib.Record, namespace="tests.seam.Add"):
    a: int
    b: int


def make_app() -> agentlib.App:
    return agentlib.App("seam-test", broker="kafka://unused:1")


def add_bytes(a: int, b: int) -> bytes:
    return Add(a, b).dumps()


def test_each_record_is_done_once_when_the_agent_asks_for_the_next():
    app = make_app()
    progress: list[str] = []

    @app.agent(app.topic("in", value_type=Add))
    async def adding(stream):
        async for value in stream:
            progress.append(f"got {value.a}")
            yield value.a + value.b

    async def scenario() -> None:
        feeder = Feeder(adding)
        await feeder.host.start()
        feeder.host.feed(raw(add_bytes(1, 1), offset=10))
        await feeder.settle()
        # the agent is parked in `async for` waiting for the next one: 10 is done
        assert feeder.done == [10]
        feeder.host.feed(raw(add_bytes(2, 2), offset=11))
        feeder.host.feed(raw(add_bytes(3, 3), offset=12))
        await feeder.host.stop(timeout=5)
        assert feeder.done == [10, 11, 12]
        assert progress == ["got 1", "got 2", "got 3"]
        assert feeder.host.in_flight == 0
    asyncio.run(scenario())


def test_topic_sink_holds_done_until_the_delivery_report():
    app = make_app()
    out = app.topic("out")

    @app.agent(app.topic("in", value_type=Add), sink=[out])
    async def adding(stream):
        async for value in stream:
            yield value.a + value.b

    producer = FakeProducer()
    app._producer = producer  # type: ignore[assignment]

    async def scenario() -> None:
        feeder = Feeder(adding, producer=producer)
        await feeder.host.start()
        feeder.host.feed(raw(add_bytes(1, 2), offset=0))
        feeder.host.feed(raw(add_bytes(3, 4), offset=1))
        await feeder.settle()
        assert [(s.topic, s.value) for s in producer.sent] == [("out", b"3"), ("out", b"7")]
        assert feeder.done == []  # moved past both, nothing delivered yet
        producer.sent[1].deliver()
        await feeder.settle()
        assert feeder.done == [1]  # done per record, in delivery order
        producer.sent[0].deliver()
        await feeder.settle()
        assert feeder.done == [1, 0]
        await feeder.host.stop(timeout=5)
    asyncio.run(scenario())


def test_async_sink_is_awaited_before_the_agent_reads_the_next_event():
    app = make_app()
    trace: list[str] = []
    release = asyncio.Event()

    async def slow_sink(value: int) -> None:
        trace.append(f"sink start {value}")
        await release.wait()
        trace.append(f"sink end {value}")

    @app.agent(app.topic("in", value_type=int), sink=[slow_sink])
    async def double(stream):
        async for value in stream:
            trace.append(f"agent {value}")
            yield value * 2

    async def scenario() -> None:
        feeder = Feeder(double)
        await feeder.host.start()
        feeder.host.feed(raw(b"1", offset=0))
        feeder.host.feed(raw(b"2", offset=1))
        for _ in range(20):
            await asyncio.sleep(0)
        assert trace == ["agent 1", "sink start 2"]
        assert feeder.done == []
        release.set()
        await feeder.host.stop(timeout=5)
        assert trace == ["agent 1", "sink start 2", "sink end 2", "agent 2",
                         "sink start 4", "sink end 4"]
        assert feeder.done == [0, 1]
    asyncio.run(scenario())


def test_undecodable_value_goes_to_on_error_and_the_agent_keeps_running():
    app = make_app()
    seen: list[int] = []

    @app.agent(app.topic("in", value_type=Add))
    async def adding(stream):
        async for value in stream:
            seen.append(value.a)

    async def scenario() -> None:
        feeder = Feeder(adding)
        await feeder.host.start()
        feeder.host.feed(raw(b"{not json", offset=0))
        feeder.host.feed(raw(b'{"a": 1}', offset=1))  # Add without its required b
        feeder.host.feed(raw(add_bytes(5, 5), offset=2))
        await feeder.host.stop(timeout=5)
        assert [(offset, attempt) for offset, _, attempt in feeder.errors] == [(0, 1), (1, 1)]
        assert isinstance(feeder.errors[0][1], ValueError)
        assert isinstance(feeder.errors[1][1], TypeError)
        assert seen == [5]
        assert feeder.done == [0, 1, 2]
    asyncio.run(scenario())


def test_retry_feeds_the_same_record_again_before_later_ones():
    app = make_app()
    attempts: list[int] = []

    @app.agent(app.topic("in", value_type=int))
    async def flaky(stream):
        async for value in stream:
            attempts.append(value)
            if value == 1 and attempts.count(1) < 3:
                raise RuntimeError("transient")

    async def scenario() -> None:
        feeder = Feeder(flaky, verdicts=[ErrorVerdict.RETRY, ErrorVerdict.RETRY])
        await feeder.host.start()
        for offset, value in enumerate([b"1", b"2", b"3"]):
            feeder.host.feed(raw(value, offset=offset))
        await feeder.host.stop(timeout=5)
        assert attempts == [1, 1, 1, 2, 3]
        assert [(offset, attempt) for offset, _, attempt in feeder.errors] == [(0, 1), (0, 2)]
        assert feeder.done == [0, 1, 2]
    asyncio.run(scenario())


def test_agent_exception_acks_by_verdict_and_restarts_the_agent_function():
    app = make_app()
    starts: list[int] = []
    seen: list[int] = []

    @app.agent(app.topic("in", value_type=int))
    async def fragile(stream):
        starts.append(len(seen))
        async for value in stream:
            seen.append(value)
            if value == 2:
                raise ValueError("bad value")
            yield value

    async def scenario() -> None:
        feeder = Feeder(fragile)
        await feeder.host.start()
        starts.clear()  # start() primed the function once to learn its topics
        for offset in range(4):
            feeder.host.feed(raw(str(offset + 1).encode(), offset=offset))
        await feeder.host.stop(timeout=5)
        assert seen == [1, 2, 3, 4]
        assert starts == [0, 2]  # restarted once, on the same stream, after event 2
        assert [offset for offset, _, _ in feeder.errors] == [1]
        assert feeder.done == [0, 1, 2, 3]
    asyncio.run(scenario())


def test_on_error_raising_stops_the_host_and_propagates_from_stop():
    app = make_app()

    @app.agent(app.topic("in", value_type=int))
    async def failing(stream):
        async for _value in stream:
            raise ValueError("boom")

    class Crash(Exception):
        pass

    async def crash_policy(record: RawRecord, exc: BaseException, attempt: int) -> Any:
        raise Crash(f"offset {record.offset}: {exc}")

    async def scenario() -> None:
        feeder = Feeder(failing, on_error=crash_policy)
        await feeder.host.start()
        feeder.host.feed(raw(b"1", offset=7))
        feeder.host.feed(raw(b"2", offset=8))
        with pytest.raises(Crash, match="offset 7: boom"):
            await feeder.host.stop(timeout=5)
        assert feeder.done == []
    asyncio.run(scenario())


def test_take_batch_is_done_together_when_the_next_batch_is_requested():
    app = make_app()
    batches: list[list[int]] = []

    @app.agent(app.topic("in", value_type=int))
    async def batcher(stream):
        async for batch in stream.take(2):
            batches.append(batch)

    async def scenario() -> None:
        feeder = Feeder(batcher)
        await feeder.host.start()
        feeder.host.feed(raw(b"1", offset=0))
        await feeder.settle()
        assert feeder.done == []  # batch still filling
        feeder.host.feed(raw(b"2", offset=1))
        await feeder.settle()
        assert batches == [[1, 2]]
        assert feeder.done == [0, 1]
        await feeder.host.stop(timeout=5)
    asyncio.run(scenario())


def test_filtered_out_event_is_done_without_reaching_the_agent_body():
    app = make_app()
    seen: list[int] = []

    @app.agent(app.topic("in", value_type=int))
    async def evens(stream):
        async for value in stream.filter(lambda v: v % 2 == 0):
            seen.append(value)

    async def scenario() -> None:
        feeder = Feeder(evens)
        await feeder.host.start()
        feeder.host.feed(raw(b"1", offset=0))
        await feeder.settle()
        assert feeder.done == [0]
        feeder.host.feed(raw(b"2", offset=1))
        await feeder.host.stop(timeout=5)
        assert seen == [2]
        assert feeder.done == [0, 1]
    asyncio.run(scenario())


@pytest.mark.parametrize("use_headers", [True, False])
def test_request_gets_a_reqrep_response_with_null_key_before_the_sinks(use_headers: bool):
    app = make_app()
    order: list[str] = []
    producer = FakeProducer()

    def sink(value: int) -> None:
        order.append(f"sink {value}; replies sent: {len(producer.sent)}")

    @app.agent(app.topic("in", value_type=Add), sink=[sink], use_reply_headers=use_headers)
    async def adding(stream):
        async for value in stream:
            yield value.a + value.b

    async def scenario() -> None:
        feeder = Feeder(adding, producer=producer)
        await feeder.host.start()
        if use_headers:
            record = raw(add_bytes(2, 3), offset=0, key=b"k1", headers=(
                ("Faust-Ag-ReplyTo", b"f-reply-x"), ("Faust-Ag-CorrelationId", b"cid-1")))
        else:
            envelope = {"value": Add(2, 3).to_representation(), "reply_to": "f-reply-x",
                        "correlation_id": "cid-1", "__faust": {"ns": "@ReqRepRequest"}}
            record = raw(json.dumps(envelope).encode(), offset=0, key=b"k1")
        feeder.host.feed(record)
        await feeder.settle()
        assert order == ["sink 5; replies sent: 1"]
        [reply] = producer.sent
        assert (reply.topic, reply.key) == ("f-reply-x", None)
        assert json.loads(reply.value or b"") == {
            "key": "k1", "value": 5, "correlation_id": "cid-1",
            "__faust": {"ns": "@ReqRepResponse"}}
        assert feeder.done == []  # the reply is not delivered yet
        reply.deliver()
        await feeder.host.stop(timeout=5)
        assert feeder.done == [0]
    asyncio.run(scenario())


def test_group_by_forwards_to_the_repartition_topic_and_reads_it_back():
    app = make_app()

    class Transfer(agentlib.Record, namespace="tests.seam.Transfer"):
        account_id: str
        amount: float

    seen: list[tuple[str, Any, float]] = []

    @app.agent(app.topic("transfers", value_type=Transfer), name="seam.by_account")
    async def by_account(stream):
        async for transfer in stream.group_by(Transfer.account_id):
            event = stream.current_event
            seen.append((event.message.topic, event.key, transfer.amount))

    producer = FakeProducer(auto_deliver=True)

    repartition = "seam.by_account-transfers-Transfer.account_id-repartition"

    async def scenario() -> None:
        assert by_account.topic_names() == ["transfers", repartition]
        feeder = Feeder(by_account, producer=producer)
        await feeder.host.start()
        source = Transfer("acc-9", 1.5).dumps()
        feeder.host.feed(raw(source, offset=0, topic="transfers"))
        await feeder.settle()
        [forwarded] = producer.sent
        assert (forwarded.topic, forwarded.key, forwarded.value) == (
            repartition, b"acc-9", source)
        assert seen == []
        assert feeder.done == [0]  # the source event is done once the forward is delivered
        feeder.host.feed(raw(source, offset=0, topic=repartition,
                             key=b"acc-9"))
        await feeder.host.stop(timeout=5)
        assert seen == [(repartition, b"acc-9", 1.5)]
    asyncio.run(scenario())


def test_stop_finishes_every_record_fed_before_it():
    app = make_app()
    seen: list[int] = []

    @app.agent(app.topic("in", value_type=int))
    async def slow(stream):
        async for value in stream:
            await asyncio.sleep(0)
            seen.append(value)

    async def scenario() -> None:
        feeder = Feeder(slow)
        await feeder.host.start()
        for offset in range(50):
            feeder.host.feed(raw(str(offset).encode(), offset=offset))
        assert feeder.host.in_flight == 50
        await feeder.host.stop(timeout=5)
        assert seen == list(range(50))
        assert feeder.done == list(range(50))
        with pytest.raises(RuntimeError, match="stopping"):
            feeder.host.feed(raw(b"1", offset=99))
    asyncio.run(scenario())


def test_failed_sink_delivery_goes_to_on_error_and_retry_runs_the_event_again():
    app = make_app()
    out = app.topic("out")
    seen: list[int] = []

    @app.agent(app.topic("in", value_type=int), sink=[out])
    async def forward(stream):
        async for value in stream:
            seen.append(value)
            yield value

    producer = FakeProducer()
    app._producer = producer  # type: ignore[assignment]

    async def scenario() -> None:
        feeder = Feeder(forward, producer=producer, verdicts=[ErrorVerdict.RETRY])
        await feeder.host.start()
        feeder.host.feed(raw(b"5", offset=3))
        await feeder.settle()
        producer.sent[0].future.set_exception(RuntimeError("broker said no"))
        await feeder.settle()
        assert [(offset, str(exc), attempt) for offset, exc, attempt in feeder.errors] == [
            (3, "broker said no", 1)]
        producer.sent[1].deliver()
        await feeder.host.stop(timeout=5)
        assert seen == [5, 5]
        assert feeder.done == [3]
    asyncio.run(scenario())


def test_sinks_after_an_async_sink_get_the_value_once_it_returned_in_declaration_order():
    app = make_app()
    out = app.topic("out")
    trace: list[str] = []
    release = asyncio.Event()

    async def slow_sink(value: int) -> None:
        trace.append(f"slow {value}")
        await release.wait()

    def plain_sink(value: int) -> None:
        trace.append(f"plain {value}")

    @app.agent(app.topic("in", value_type=int), sink=[plain_sink, slow_sink, out, plain_sink])
    async def forward(stream):
        async for value in stream:
            yield value

    producer = FakeProducer(auto_deliver=True)
    app._producer = producer  # type: ignore[assignment]

    async def scenario() -> None:
        feeder = Feeder(forward, producer=producer)
        await feeder.host.start()
        feeder.host.feed(raw(b"7", offset=0))
        for _ in range(20):
            await asyncio.sleep(0)
        assert trace == ["plain 7", "slow 7"] and producer.sent == []
        release.set()
        await feeder.host.stop(timeout=5)
        assert trace == ["plain 7", "slow 7", "plain 7"]
        assert [(s.topic, s.value) for s in producer.sent] == [("out", b"7")]
        assert feeder.done == [0]
    asyncio.run(scenario())


def test_topic_sink_outputs_counted_in_a_batch_finish_their_records_on_its_reports():
    app = make_app()
    out = app.topic("out")

    @app.agent(app.topic("in", value_type=int), sink=[out])
    async def forward(stream):
        async for value in stream:
            yield value

    producer, handle = counting_producer()
    app._producer = producer

    async def scenario() -> None:
        feeder = Feeder(forward, verdicts=[ErrorVerdict.ACK])
        await feeder.host.start()
        for offset in range(3):
            feeder.host.feed(raw(b"%d" % offset, offset=offset))
        await feeder.settle()
        assert [(topic, value) for topic, _, value, _, _ in handle.produced] == [
            ("out", b"0"), ("out", b"1"), ("out", b"2")]
        assert len({id(on_delivery) for *_, on_delivery in handle.produced}) == 1
        handle.report(2)
        handle.report(0)
        producer._dispatch_reports()
        await feeder.settle()
        assert feeder.done == []  # a batch settles whole, once every message reported
        handle.report(1, error="broker said no")
        producer._dispatch_reports()
        await feeder.settle()
        assert feeder.done == [0, 2, 1]  # the failed one after on_error's ACK
        assert [(offset, str(exc)) for offset, exc, _ in feeder.errors] == [
            (1, "broker said no")]
        await feeder.host.stop(timeout=5)
    asyncio.run(scenario())


def test_a_transactional_producers_topic_outputs_finish_their_records_when_queued():
    """Under exactly once the transaction's commit reports every output (and comes
    before the record's ACK leaves the instance): an output asks for no delivery
    report, and its record is done as soon as the agent moved past it."""
    app = make_app()
    out = app.topic("out")

    @app.agent(app.topic("in", value_type=int), sink=[out])
    async def forward(stream):
        async for value in stream:
            yield value

    producer, handle = counting_producer()
    producer._extra_config["transactional.id"] = "agentd-g-h-forward-0"
    app._producer = producer

    async def scenario() -> None:
        feeder = Feeder(forward)
        await feeder.host.start()
        for offset in range(3):
            feeder.host.feed(raw(b"%d" % offset, offset=offset))
        await feeder.settle()
        assert [(topic, value, on_delivery) for topic, _, value, _, on_delivery
                in handle.produced] == [("out", b"0", None), ("out", b"1", None),
                                        ("out", b"2", None)]
        assert feeder.done == [0, 1, 2] and feeder.host.in_flight == 0
        await feeder.host.stop(timeout=5)
    asyncio.run(scenario())


def test_echo_sends_each_value_and_the_event_waits_for_it():
    app = make_app()
    seen: list[tuple[Any, int]] = []

    @app.agent(app.topic("in", value_type=int))
    async def echoing(stream):
        async for key, value in stream.echo("copy").items():
            seen.append((key, value))

    producer = FakeProducer()

    async def scenario() -> None:
        feeder = Feeder(echoing, producer=producer)
        await feeder.host.start()
        feeder.host.feed(raw(b"8", offset=0, key=b"k"))
        await feeder.settle()
        assert seen == [(b"k", 8)]
        assert [(s.topic, s.key, s.value) for s in producer.sent] == [("copy", b"k", b"8")]
        assert feeder.done == []
        producer.sent[0].deliver()
        await feeder.host.stop(timeout=5)
        assert feeder.done == [0]
    asyncio.run(scenario())


def test_channel_agent_receives_what_this_process_sends_to_the_channel():
    app = make_app()
    channel = app.channel(value_type=int)
    seen: list[int] = []

    @app.agent(channel)
    async def local(stream):
        async for value in stream:
            seen.append(value)

    assert local.topic_names() == []

    async def scenario() -> None:
        feeder = Feeder(local)
        await feeder.host.start()
        await channel.send(value=1)
        await channel.send(value=2)
        await feeder.host.stop(timeout=5)
        assert feeder.done == [0, 1]
    asyncio.run(scenario())
    assert seen == [1, 2]


def test_on_done_raising_stops_the_host_instead_of_blaming_the_agent():
    app = make_app()

    @app.agent(app.topic("in", value_type=int))
    async def fine(stream):
        async for _value in stream:
            pass

    def broken_on_done(record: RawRecord) -> None:
        raise KeyError(record.offset)

    errors: list[BaseException] = []

    async def on_error(record: RawRecord, exc: BaseException, attempt: int) -> ErrorVerdict:
        errors.append(exc)
        return ErrorVerdict.ACK

    async def scenario() -> None:
        host = AgentHost(fine, on_done=broken_on_done, on_error=on_error)
        await host.start()
        host.feed(raw(b"1", offset=4))
        host.feed(raw(b"2", offset=5))
        with pytest.raises(KeyError):
            await host.stop(timeout=5)
        assert errors == []
    asyncio.run(scenario())


def test_feed_many_reports_an_undecodable_record_between_good_ones_in_order():
    app = make_app()
    seen: list[int] = []

    @app.agent(app.topic("in", value_type=Add))
    async def adding(stream):
        async for value in stream:
            seen.append(value.a)

    async def scenario() -> None:
        feeder = Feeder(adding, verdicts=[ErrorVerdict.RETRY])
        await feeder.host.start()
        feeder.host.feed_many([raw(add_bytes(1, 1), offset=0)])
        await feeder.settle()
        feeder.host.feed_many([raw(add_bytes(2, 2), offset=1), raw(b"{not json", offset=2),
                               raw(add_bytes(3, 3), offset=3)])
        feeder.host.feed_many([])
        await feeder.host.stop(timeout=5)
        # RETRY feeds the bad record again (it fails again: ACK) before offset 3.
        assert [(offset, attempt) for offset, _, attempt in feeder.errors] == [(2, 1), (2, 2)]
        assert seen == [1, 2, 3]
        assert feeder.done == [0, 1, 2, 3]
        assert feeder.host.in_flight == 0
    asyncio.run(scenario())


def test_new_raw_record_makes_the_same_frozen_record_as_the_class():
    import dataclasses

    from agentlib.seam import new_raw_record

    args = ("t", 3, 7, None, b"k", None, (("h", b"v"),))
    made = new_raw_record(*args)
    assert type(made) is RawRecord
    assert made == RawRecord(*args) and hash(made) == hash(RawRecord(*args))
    assert repr(made) == repr(RawRecord(*args))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.offset = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del made.key  # type: ignore[misc]


def test_new_raw_record_copies_pickles_and_replaces_as_the_class_does():
    import copy
    import dataclasses
    import pickle

    from agentlib.seam import new_raw_record

    args = ("t", 3, 7, 1700000000000, None, b"v", ())
    made, real = new_raw_record(*args), RawRecord(*args)
    assert dataclasses.asdict(made) == dataclasses.asdict(real)
    assert dataclasses.replace(made, offset=9) == RawRecord("t", 3, 9, 1700000000000, None,
                                                            b"v", ())
    for clone in (copy.copy(made), copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
        assert type(clone) is RawRecord and clone == real
    assert not hasattr(made, "__dict__")  # slots only, as the class


@pytest.mark.parametrize("data", [b'{"a":1,"b":[1,2]}', b"[1,2]", b'"x"', b"{", b"{\xff}",
                                  b'{"s":"\xc3\xa9\\ud800"}', b"\xef\xbb\xbf{}",
                                  '{"a":1}'.encode("utf-16-le"), b"{\x00}", b"[ 1 ]",
                                  b'{"n":123456789012345678901234567890}', b"[NaN,-Infinity]",
                                  b'{"a":1,"a":2}', b'{"f":1e400,"g":0.1,"h":-0.0}',
                                  b'{"s":"\\ud83d\\ude00"}', b"{} x", b"  {}\n"])
def test_json_codec_decodes_as_json_loads(data: bytes):
    from agentlib import codecs

    try:
        expected: Any = json.loads(data)
    except ValueError as exc:
        expected = f"not JSON: {exc}"
    try:
        got: Any = codecs.loads("json", data)
    except codecs.CodecError as exc:
        got = str(exc)
    assert got == expected


def test_a_ticket_held_for_a_reported_delivery_is_done_only_when_it_is_reported():
    from agentlib.tickets import Ledger, Ticket

    async def scenario() -> None:
        done: list[int] = []
        asked: list[tuple[int, str]] = []

        async def retry_wanted(record, error, attempt):
            asked.append((record.offset, str(error)))
            return False

        ledger = Ledger("a", on_done=lambda record: done.append(record.offset),
                        retry_wanted=retry_wanted, wake=lambda: None, requeue=lambda t: None)
        ledger.fed(2)
        first, second = (Ticket(ledger, raw(b"1", offset=n), 1) for n in (0, 1))
        for ticket in (first, second):
            ledger.hold_counted([ticket])
            ticket.ack()
        ledger.cancel_pending()  # reported holds have no future to cancel
        assert done == []
        ledger.delivered(first)
        assert done == [0]
        ledger.reported([second], RuntimeError("delivery failed"))
        await asyncio.sleep(0.01)  # the verdict runs in a task, as for a failed future
        assert asked == [(1, "delivery failed")] and done == [0, 1]
        assert ledger.in_flight == 0
    asyncio.run(scenario())
