"""Agent methods as a client: what goes on the wire for send/cast/ask, and join order.

The producer and reply consumer are in-memory stand-ins; a stand-in "agent" answers
each request from its bytes, in reverse order, so ordering guarantees are visible.
The same calls against a real broker are the client-mode tests' job.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agentlib_fakes import FakeProducer
from confluent_kafka import KafkaError, KafkaException

import agentlib as faust
from agentlib.kafka import RecordMetadata


class Add(faust.Record, namespace="tests.client.Add"):
    a: int
    b: int


class FakeReplies:
    topic = "f-reply-fake"

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.started = False

    async def start(self) -> None:
        self.started = True

    def expect(self, correlation_id: str) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[correlation_id] = future
        return future


class AnsweringProducer(FakeProducer):
    """Delivers at once and answers requests (value squared) in reverse order."""

    def __init__(self, replies: FakeReplies) -> None:
        super().__init__(auto_deliver=True)
        self.replies = replies
        self.pending: list[tuple[str, Any]] = []

    def send_soon(self, topic: str, key: bytes | None, value: bytes | None,
                  partition: int | None = None, headers: Any = None
                  ) -> asyncio.Future[RecordMetadata]:
        future = super().send_soon(topic, key, value, partition, headers)
        correlation_id = dict(headers or {}).get("Faust-Ag-CorrelationId")
        if correlation_id is not None:
            self.pending.insert(0, (correlation_id.decode(), json.loads(value or b"")))
            asyncio.get_running_loop().call_soon(self._answer_all)
        return future

    def _answer_all(self) -> None:
        pending, self.pending = self.pending, []
        for correlation_id, value in pending:
            future = self.replies.waiting.get(correlation_id)
            if future is not None and not future.done():
                future.set_result(value * value)


def client_app() -> tuple[faust.App, AnsweringProducer]:
    app = faust.App("client-test", broker="kafka://unused:1")
    replies = FakeReplies()
    producer = AnsweringProducer(replies)
    app._producer = producer  # type: ignore[assignment]
    app._replies = replies  # type: ignore[assignment]
    return app, producer


def squaring_agent(app: faust.App) -> faust.Agent[Any]:
    """The guide's ``pow2`` agent on ``app`` (its replies come from the stand-ins)."""

    @app.agent(app.topic("pow2"))
    async def pow2(stream: faust.StreamT[int]) -> Any:
        async for value in stream:
            yield value * value
    return pow2


def test_declaring_and_testing_agents_touches_no_kafka():
    app = faust.App("lazy", broker="kafka://nowhere:1")

    @app.agent(app.topic("t", value_type=int), sink=[print])
    async def agent(stream):
        async for value in stream:
            yield value

    async def scenario() -> None:
        async with agent.test_context() as ctx:
            await ctx.put(1)
    asyncio.run(scenario())
    assert app._producer is None and app._replies is None


def test_agentd_broker_environment_overrides_the_app_broker(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AGENTD_BROKER", "kafka://override:9093")
    app = faust.App("env", broker="kafka://configured:9092")
    assert app.producer.bootstrap == "override:9093"


@pytest.mark.parametrize("use_headers", [True, False])
def test_send_with_reply_to_uses_headers_or_the_request_envelope(use_headers: bool):
    app, producer = client_app()

    @app.agent(app.topic("pow2", value_type=int), use_reply_headers=use_headers)
    async def pow2(stream):
        async for value in stream:
            yield value * value

    @app.agent(app.topic("results"))
    async def results(stream):
        async for value in stream:
            yield value

    asyncio.run(pow2.send(key=b"k", value=3, reply_to=results, correlation_id="cid-9"))
    [sent] = producer.sent
    assert (sent.topic, sent.key) == ("pow2", b"k")
    if use_headers:
        assert sent.headers == [("Faust-Ag-ReplyTo", b"results"),
                                ("Faust-Ag-CorrelationId", b"cid-9")]
        assert sent.value == b"3"
    else:
        assert sent.headers is None
        assert json.loads(sent.value or b"") == {
            "value": 3, "reply_to": "results", "correlation_id": "cid-9",
            "__faust": {"ns": "@ReqRepRequest"}}


def test_cast_sends_without_reply_headers():
    app, producer = client_app()

    @app.agent(app.topic("adding", value_type=Add))
    async def adding(stream):
        async for value in stream:
            yield value.a + value.b

    asyncio.run(adding.cast(Add(a=2, b=2), key="acct"))
    [sent] = producer.sent
    assert (sent.key, sent.value, sent.headers) == (b"acct", Add(2, 2).dumps(), None)


def test_ask_returns_the_reply_for_its_correlation_id():
    app, _ = client_app()
    pow2 = squaring_agent(app)

    assert asyncio.run(pow2.ask(7)) == 49
    assert app._replies is not None and app._replies.started


def test_ask_raises_the_delivery_error_of_a_request_kafka_refused():
    app, producer = client_app()
    pow2 = squaring_agent(app)
    refused = KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION))

    def refuse(topic: str, key: bytes | None, value: bytes | None,
               partition: int | None = None, headers: Any = None
               ) -> asyncio.Future[RecordMetadata]:
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        future.set_exception(refused)
        return future

    producer.send_soon = refuse  # type: ignore[method-assign]
    with pytest.raises(KafkaException) as raised:
        asyncio.run(asyncio.wait_for(pow2.ask(7), 5))
    assert raised.value is refused


def test_join_and_kvjoin_return_replies_in_input_order():
    app, producer = client_app()
    pow2 = squaring_agent(app)

    assert asyncio.run(pow2.join([1, 2, 3, 4, 5, 6, 7, 8])) == [1, 4, 9, 16, 25, 36, 49, 64]
    assert asyncio.run(pow2.kvjoin([(b"a", 3), (b"b", 4)])) == [9, 16]
    assert [s.key for s in producer.sent[-2:]] == [b"a", b"b"]


def test_map_yields_every_reply_as_it_arrives():
    app, _ = client_app()
    pow2 = squaring_agent(app)

    async def collect() -> list[int]:
        async def values() -> Any:
            for value in range(1, 6):
                yield value
        return [reply async for reply in pow2.map(values())]

    assert sorted(asyncio.run(collect())) == [1, 4, 9, 16, 25]


def test_app_command_runs_the_async_function_with_parsed_arguments():
    from click.testing import CliRunner
    app = faust.App("commands", broker="kafka://unused:1")
    calls: list[tuple[int, int, bool]] = []

    @app.command(
        faust.cli.argument("a", type=int, help="First number to add"),
        faust.cli.argument("b", type=int, help="Second number to add"),
        faust.cli.option("--print/--no-print", help="Enable debug output"),
    )
    async def send_value(a: int, b: int, print: bool) -> None:
        await asyncio.sleep(0)
        calls.append((a, b, print))

    group = faust.cli.build_group(app)
    result = CliRunner().invoke(group, ["send_value", "4", "8", "--print"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(group, ["send_value", "1", "2"])
    assert result.exit_code == 0, result.output
    assert calls == [(4, 8, True), (1, 2, False)]
    assert app._producer is None  # a command that sends nothing never connects


def test_kvmap_sends_each_key_as_the_message_key_and_yields_every_reply():
    app, producer = client_app()
    pow2 = squaring_agent(app)

    async def collect() -> list[int]:
        async def items() -> Any:
            for key, value in ((b"a", 2), (b"b", 3), (b"c", 4)):
                yield key, value
        return [reply async for reply in pow2.kvmap(items())]

    assert sorted(asyncio.run(collect())) == [4, 9, 16]
    assert [(s.key, s.value) for s in producer.sent] == [(b"a", b"2"), (b"b", b"3"),
                                                         (b"c", b"4")]


def test_join_and_kvjoin_over_async_iterables_keep_input_order():
    app, producer = client_app()
    pow2 = squaring_agent(app)

    async def values() -> Any:
        for value in (5, 6, 7):
            yield value

    async def pairs() -> Any:
        for key, value in (("x", 8), ("y", 9)):
            yield key, value

    assert asyncio.run(pow2.join(values())) == [25, 36, 49]
    assert asyncio.run(pow2.kvjoin(pairs())) == [64, 81]
    assert [s.key for s in producer.sent[-2:]] == [b"x", b"y"]


def test_app_command_taking_self_gets_the_app_and_say_as_in_faust():
    from click.testing import CliRunner
    app = faust.App("commands-self", broker="kafka://unused:1")

    @app.command(faust.cli.option("--times", type=int, default=1))
    async def greet(self: Any, times: int) -> None:
        for _ in range(times):
            self.say(f"hello from {self.app.id}")

    result = CliRunner().invoke(faust.cli.build_group(app), ["greet", "--times", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["hello from commands-self"] * 2


def test_map_yields_replies_while_a_slow_input_is_still_being_sent():
    app, _ = client_app()
    pow2 = squaring_agent(app)

    async def collect() -> list[int]:
        first_reply = asyncio.Event()

        async def values() -> Any:
            yield 3
            await first_reply.wait()  # the next value comes only after a reply arrived
            yield 4

        got: list[int] = []
        async for reply in pow2.map(values()):
            got.append(reply)
            first_reply.set()
        return got

    assert asyncio.run(asyncio.wait_for(collect(), 30)) == [9, 16]


def test_map_raises_what_its_input_raises():
    app, _ = client_app()
    pow2 = squaring_agent(app)

    async def collect() -> list[int]:
        async def values() -> Any:
            yield 2
            raise LookupError("input failed")
        return [reply async for reply in pow2.map(values())]

    with pytest.raises(LookupError, match="input failed"):
        asyncio.run(asyncio.wait_for(collect(), 30))


def test_map_keeps_at_most_map_window_requests_waiting(monkeypatch: pytest.MonkeyPatch):
    from agentlib import agents
    monkeypatch.setattr(agents, "MAP_WINDOW", 2)
    app, producer = client_app()
    unanswered_at_send: list[int] = []
    send_soon = producer.send_soon

    def counting_send_soon(*args: Any, **kwargs: Any) -> Any:
        unanswered_at_send.append(sum(not f.done() for f in producer.replies.waiting.values()))
        return send_soon(*args, **kwargs)

    producer.send_soon = counting_send_soon  # type: ignore[method-assign]

    @app.agent(app.topic("pow2"))
    async def pow2(stream):
        async for value in stream:
            yield value * value

    async def collect() -> list[int]:
        return [reply async for reply in pow2.map(range(1, 8))]

    assert sorted(asyncio.run(collect())) == [n * n for n in range(1, 8)]
    assert len(unanswered_at_send) == 7 and max(unanswered_at_send) <= 2


def test_cast_and_ask_carry_the_callers_headers():
    app, producer = client_app()
    pow2 = squaring_agent(app)

    asyncio.run(pow2.cast(2, headers={"trace": "t-1"}))
    assert asyncio.run(pow2.ask(3, headers=[("trace", b"t-2")])) == 9
    cast, ask = producer.sent
    assert cast.headers == [("trace", b"t-1")]
    assert ask.headers[0] == ("trace", b"t-2")
    assert [name for name, _ in ask.headers[1:]] == ["Faust-Ag-ReplyTo",
                                                     "Faust-Ag-CorrelationId"]
