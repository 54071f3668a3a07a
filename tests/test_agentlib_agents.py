"""The seed guide's agents, run with ``import agentlib as faust`` through test_context."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterable
from typing import Any

import pytest
from agentlib_fakes import FakeProducer

import agentlib as faust


class Add(faust.Record, namespace="tests.agents.Add"):
    a: int
    b: int


class BankTransfer(faust.Record, namespace="tests.agents.BankTransfer"):
    account_id: str
    amount: float


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_adding_agent_yields_the_sum_for_each_put():
    app = faust.App("agent-example")
    topic = app.topic("adding", value_type=Add)

    @app.agent(topic)
    async def adding(stream: faust.StreamT[Add]) -> AsyncIterable[int]:
        async for value in stream:
            yield value.a + value.b

    async def scenario() -> None:
        async with adding.test_context() as agent:
            event = await agent.put(Add(a=4, b=4))
            assert agent.results[event.message.offset] == 8
            event = await agent.put(Add(2, 3))
            assert agent.results[event.message.offset] == 5
            assert event.value == Add(2, 3)
    run(scenario())


def test_agent_name_and_topic_default_to_the_qualified_function_name():
    app = faust.App("naming")

    @app.agent()
    async def adder(stream):
        async for value in stream:
            yield value

    assert adder.name == f"{__name__}.{adder.fun.__qualname__}"
    assert adder.topic_names() == [f"naming-{adder.name}"]
    assert app.agents == {adder.name: adder}

    @app.agent(app.topic("topic_name1", "topic_name2"), name="custom", concurrency=10)
    async def multi(stream):
        async for value in stream:
            yield value

    assert multi.channel.get_topic_name() == "topic_name1"
    assert multi.topic_names() == ["topic_name1", "topic_name2"]
    assert (multi.name, multi.concurrency) == ("custom", 10)


def test_function_and_async_function_sinks_receive_every_yield():
    app = faust.App("sinks")
    plain: list[int] = []
    awaited: list[int] = []

    def mysink(value: int) -> None:
        plain.append(value)

    async def myasyncsink(value: int) -> None:
        await asyncio.sleep(0)
        awaited.append(value)

    @app.agent(app.topic("in", value_type=int), sink=[mysink, myasyncsink])
    async def myagent(stream):
        async for value in stream:
            yield value * 2

    async def scenario() -> None:
        async with myagent.test_context() as agent:
            for value in (1, 2, 3):
                await agent.put(value)
            assert plain == awaited == [2, 4, 6]
    run(scenario())


def test_topic_and_agent_sinks_produce_their_values():
    app = faust.App("sinks2")
    log_topic = app.topic("agent_log")
    producer = FakeProducer(auto_deliver=True)
    app._producer = producer  # type: ignore[assignment]

    @app.agent(app.topic("b-in"))
    async def agent_b(stream):
        async for value in stream:
            yield value

    @app.agent(app.topic("a-in", value_type=int), sink=[log_topic, agent_b])
    async def agent_a(stream):
        async for value in stream:
            yield value * 2

    async def scenario() -> None:
        async with agent_a.test_context() as agent:
            await agent.put(21)
        assert sorted((s.topic, s.value) for s in producer.sent) == [
            ("agent_log", b"42"), ("b-in", b"42")]
    run(scenario())


def test_concurrency_is_declared_for_the_supervisor_and_each_instance_runs_alone():
    app = faust.App("news")

    class Article(faust.Record, isodates=True, namespace="tests.agents.Article"):
        url: str
        date_published: datetime.datetime

    stored: list[str] = []

    @app.agent(app.topic("news", value_type=Article), concurrency=10)
    async def imports_news(articles):
        async for article in articles:
            stored.append(f"{article.url} {article.date_published.year}")

    assert imports_news.concurrency == 10

    async def scenario() -> None:
        async with imports_news.test_context() as agent:
            await agent.put(Article("http://a", datetime.datetime(2020, 1, 1)))
            event = await agent.put({"url": "http://b",
                                     "date_published": "2021-02-03T04:05:06Z"})
            assert event.value.date_published.tzinfo is not None
        assert stored == ["http://a 2020", "http://b 2021"]
    run(scenario())


def test_filter_take_enumerate_and_through():
    app = faust.App("ops")
    seen: dict[str, list[Any]] = {"filter": [], "take": [], "enumerate": [], "through": []}

    @app.agent(app.topic("f", value_type=int))
    async def evens(stream):
        async for value in stream.filter(lambda v: v % 2 == 0):
            seen["filter"].append(value)

    @app.agent(app.topic("t", value_type=int))
    async def pairs(stream):
        async for batch in stream.take(2, within=10):
            seen["take"].append(batch)

    @app.agent(app.topic("e", value_type=str))
    async def numbered(stream):
        async for index, value in stream.enumerate():
            seen["enumerate"].append((index, value))

    @app.agent(app.topic("th", value_type=int))
    async def rerouted(stream):
        async for value in stream.through("th-2"):
            seen["through"].append((stream.current_event.message.topic, value))

    async def scenario() -> None:
        async with evens.test_context() as agent:
            for value in range(5):
                await agent.put(value)
        async with pairs.test_context() as agent:
            for value in range(4):
                await agent.put(value)
        async with numbered.test_context() as agent:
            for value in "ab":
                await agent.put(value)
        async with rerouted.test_context() as agent:
            await agent.put(7)
    run(scenario())
    assert seen == {"filter": [0, 2, 4], "take": [[0, 1], [2, 3]],
                    "enumerate": [(0, "a"), (1, "b")], "through": [("th-2", 7)]}
    assert rerouted.topic_names() == ["th", "th-2"]


def test_group_by_field_repartitions_by_the_new_key():
    app = faust.App("groupby")
    topic = app.topic("groupby", value_type=BankTransfer)
    keys: list[Any] = []

    @app.agent(topic)
    async def stream(s):
        async for transfer in s.group_by(BankTransfer.account_id):
            keys.append((faust.current_event().key, transfer.amount))
            yield transfer.amount

    assert stream.topic_names() == [
        "groupby", f"{stream.name}-groupby-BankTransfer.account_id-repartition"]

    async def scenario() -> None:
        async with stream.test_context() as agent:
            event = await agent.put(BankTransfer("acc-1", 10.0), key=b"old-key")
            assert agent.results[event.message.offset] == 10.0
    run(scenario())
    assert keys == [(b"acc-1", 10.0)]


def test_group_by_with_a_callable_needs_a_name():
    app = faust.App("groupby2")

    @app.agent(app.topic("g", value_type=BankTransfer))
    async def by_upper(s):
        async for _transfer in s.group_by(lambda t: t.account_id.upper(), name="upper"):
            yield faust.current_event().key

    assert by_upper.topic_names() == ["g", f"{by_upper.name}-g-upper-repartition"]

    @app.agent(app.topic("g2", value_type=BankTransfer))
    async def unnamed(s):
        async for transfer in s.group_by(lambda t: t.account_id):
            yield transfer

    async def scenario() -> None:
        async with by_upper.test_context() as agent:
            event = await agent.put(BankTransfer("abc", 1.0))
            assert agent.results[event.message.offset] == b"ABC"
        async with unnamed.test_context() as agent:
            with pytest.raises(TypeError, match="name="):
                await agent.put(BankTransfer("abc", 1.0))
    run(scenario())


def test_noack_stream_holds_events_until_acked():
    app = faust.App("noack")
    held: list[Any] = []

    @app.agent(app.topic("n", value_type=int))
    async def manual(stream):
        async for event in stream.noack().events():
            held.append(event)
            if event.value == 2:
                for earlier in held:
                    stream.ack(earlier)

    async def scenario() -> None:
        async with manual.test_context() as agent:
            await agent.put(1)
            assert agent.done == []
            await agent.put(2)
            assert [record.offset for record in agent.done] == [0, 1]
    run(scenario())


def test_agent_error_is_raised_from_put_and_the_agent_keeps_running():
    app = faust.App("errors")

    @app.agent(app.topic("x", value_type=int))
    async def picky(stream):
        async for value in stream:
            if value < 0:
                raise ValueError(f"negative: {value}")
            yield value

    async def scenario() -> None:
        async with picky.test_context() as agent:
            with pytest.raises(ValueError, match="negative: -1"):
                await agent.put(-1)
            event = await agent.put(5)
            assert agent.results[event.message.offset] == 5
    run(scenario())


def test_stream_join_raises_and_names_app_task():
    app = faust.App("joins")
    topic1, topic2 = app.topic("foo1"), app.topic("foo2")
    caught: list[Exception] = []

    @app.agent(topic1)
    async def mystream(stream):
        for attempt in (lambda: stream & topic2, stream.join, stream.combine):
            try:
                attempt()
            except faust.JoinNotSupported as exc:
                caught.append(exc)
        async for _ in stream:
            pass

    mystream.topic_names()
    assert len(caught) == 3
    assert all("@app.task" in str(exc) and "group_by" in str(exc) for exc in caught)
    with pytest.raises(NotImplementedError, match=r"@app\.agent"):
        topic1.stream()  # the supervisor owns consumption: the message says what to do


def test_request_in_test_context_replies_with_null_key_to_reply_to():
    app = faust.App("replies")
    producer = FakeProducer(auto_deliver=True)
    app._producer = producer  # type: ignore[assignment]

    @app.agent(app.topic("pow", value_type=int))
    async def pow2(stream):
        async for value in stream:
            yield value * value

    async def scenario() -> None:
        async with pow2.test_context() as agent:
            await agent.put(3, reply_to="f-reply-test", correlation_id="c1")
    run(scenario())
    [reply] = producer.sent
    assert (reply.topic, reply.key) == ("f-reply-test", None)
    assert json.loads(reply.value or b"") == {
        "key": None, "value": 9, "correlation_id": "c1", "__faust": {"ns": "@ReqRepResponse"}}


def test_tasks_timers_and_commands_are_registered():
    app = faust.App("registry")

    @app.task
    async def on_start() -> None:
        pass

    @app.timer(2.5)
    async def every() -> None:
        pass

    @app.command(faust.cli.argument("a", type=int))
    async def send_value(a: int) -> None:
        pass

    assert app.tasks == [on_start]
    assert [(t.seconds, t.fun) for t in app.timers] == [(2.5, every)]
    assert list(app.commands) == ["send_value"]


def test_group_by_results_are_keyed_by_put_order():
    app = faust.App("groupby-order")

    @app.agent(app.topic("transfers", value_type=BankTransfer))
    async def amounts(s):
        async for transfer in s.group_by(BankTransfer.account_id):
            yield transfer.amount

    async def scenario() -> None:
        async with amounts.test_context() as agent:
            events = [await agent.put(BankTransfer(account, amount))
                      for account, amount in [("a", 1.0), ("b", 2.0), ("a", 3.0)]]
            assert [event.message.offset for event in events] == [0, 1, 2]
            assert agent.results == {0: 1.0, 1: 2.0, 2: 3.0}
    run(scenario())


def test_group_by_error_is_raised_from_the_put_it_came_from():
    app = faust.App("groupby-errors")

    @app.agent(app.topic("transfers", value_type=BankTransfer))
    async def positive(s):
        async for transfer in s.group_by(BankTransfer.account_id):
            if transfer.amount < 0:
                raise ValueError("negative amount")
            yield transfer.amount

    async def scenario() -> None:
        async with positive.test_context() as agent:
            await agent.put(BankTransfer("a", 1.0))
            with pytest.raises(ValueError, match="negative amount"):
                await agent.put(BankTransfer("a", -1.0))
            await agent.put(BankTransfer("b", 2.0))
            assert agent.results == {0: 1.0, 2: 2.0}
            assert list(agent.errors) == [1]
    run(scenario())


def test_take_within_yields_a_partial_batch_when_the_time_is_up():
    app = faust.App("take-within")
    batches: list[list[int]] = []
    got_batch = asyncio.Event()

    @app.agent(app.topic("numbers", value_type=int))
    async def batcher(stream):
        async for batch in stream.take(3, within=0.01):
            batches.append(batch)
            got_batch.set()

    async def scenario() -> None:
        async with batcher.test_context() as agent:
            # Both fed before the agent runs, so both are in the batch however slow
            # this machine is; then nothing more comes and `within` ends the batch.
            first = await agent.put(1, wait=False)
            second = await agent.put(2, wait=False)
            assert (first.value, second.value, first.message.offset) == (1, 2, 0)
            await asyncio.wait_for(got_batch.wait(), 30)
            assert batches == [[1, 2]]
            await agent.put(3)  # the agent asked for the next batch: 1 and 2 are done
            assert [record.offset for record in agent.done] == [0, 1]
    run(scenario())


def test_take_waits_for_a_full_batch_until_within_expires():
    app = faust.App("take-full")
    batches: list[list[int]] = []

    @app.agent(app.topic("numbers", value_type=int))
    async def batcher(stream):
        async for batch in stream.take(3, within=3600):
            batches.append(batch)

    async def scenario() -> None:
        async with batcher.test_context() as agent:
            for value in (1, 2):
                await agent.put(value)
            assert batches == [] and agent.done == []
            await agent.put(3)
            assert batches == [[1, 2, 3]]
    run(scenario())


def test_tasks_and_timers_do_not_run_in_commands_or_test_context():
    from click.testing import CliRunner
    app = faust.App("quiet", broker="kafka://unused:1")
    ran: list[str] = []

    @app.task
    async def on_start(app: faust.App) -> None:
        ran.append("task")

    @app.timer(interval=datetime.timedelta(milliseconds=1))
    async def tick() -> None:
        ran.append("timer")

    @app.command()
    async def hello() -> None:
        await asyncio.sleep(0.05)  # a timer of 1 ms would have fired by now
        ran.append("command")

    @app.agent(app.topic("q", value_type=int))
    async def echo(stream):
        async for value in stream:
            yield value

    async def scenario() -> None:
        async with echo.test_context() as agent:
            await agent.put(1)
            await asyncio.sleep(0.05)
    run(scenario())
    result = CliRunner().invoke(faust.cli.build_group(app), ["hello"])
    assert result.exit_code == 0, result.output
    assert ran == ["command"]
    assert [(timer.seconds, timer.fun) for timer in app.timers] == [(0.001, tick)]
    assert app.tasks == [on_start]


def test_current_event_is_the_event_the_agent_is_processing():
    app = faust.App("current")
    seen: list[tuple[Any, Any, int, bytes]] = []

    @app.agent(app.topic("c", value_type=int))
    async def agent_fun(stream):
        async for value in stream:
            event = faust.current_event()
            seen.append((event.key, event.value, event.message.offset,
                         event.headers["trace"]))
            assert stream.current_event is event and event.value == value
            yield value

    assert faust.current_event() is None

    async def scenario() -> None:
        async with agent_fun.test_context() as agent:
            await agent.put(10, key=b"k1", headers={"trace": b"t1"})
            await agent.put(20, key=b"k2", headers={"trace": b"t2"})
    run(scenario())
    assert seen == [(b"k1", 10, 0, b"t1"), (b"k2", 20, 1, b"t2")]


def test_noack_events_stay_in_flight_until_event_ack_and_ack_twice_is_false():
    app = faust.App("noack2")
    acks: list[bool] = []
    held: list[Any] = []

    @app.agent(app.topic("n", value_type=int))
    async def manual(stream):
        async for event in stream.noack().events():
            held.append(event)
            if event.value == 3:
                acks.append(held[1].ack())
                acks.append(held[1].ack())

    async def scenario() -> None:
        async with manual.test_context() as agent:
            for value in (1, 2, 3):
                await agent.put(value)
            assert [record.offset for record in agent.done] == [1]
            assert agent.host.in_flight == 2
            held[0].ack()
            held[2].ack()
    run(scenario())
    assert acks == [True, False]


def test_value_failing_validation_goes_to_on_error_and_the_agent_keeps_running():
    app = faust.App("validated")

    class Order(faust.Record, validation=True, namespace="tests.agents.Order"):
        item: str
        quantity: int

    @app.agent(app.topic("orders", value_type=Order))
    async def orders(stream):
        async for order in stream:
            yield order.quantity

    async def scenario() -> None:
        async with orders.test_context() as agent:
            with pytest.raises(faust.ValidationError, match=r"Order\.quantity"):
                await agent.put({"item": "pen", "quantity": "two"})
            await agent.put(Order("pen", 2))
            assert agent.results == {1: 2}
            assert [record.offset for record in agent.done] == [0, 1]
    run(scenario())


def test_put_takes_a_timestamp_headers_and_an_agent_as_reply_to():
    app = faust.App("put-args")
    producer = FakeProducer(auto_deliver=True)
    app._producer = producer  # type: ignore[assignment]

    @app.agent(app.topic("collected"))
    async def collector(stream):
        async for value in stream:
            yield value

    @app.agent(app.topic("pow-args", value_type=int))
    async def pow2(stream):
        async for value in stream:
            yield value * value

    async def scenario() -> Any:
        async with pow2.test_context() as agent:
            return await agent.put(4, timestamp=1_700_000_000.5, headers={"trace": "t"},
                                   reply_to=collector, correlation_id="c-4")
    event = run(scenario())
    assert event.message.timestamp_ms == 1_700_000_000_500
    assert event.headers["trace"] == b"t"
    [reply] = producer.sent
    assert reply.topic == "collected"
    assert json.loads(reply.value or b"")["correlation_id"] == "c-4"
