"""Faust 0.15 behaviours the agents guide relies on, each pinned by a test that failed
before agentlib matched it (``import agentlib as faust``)."""

from __future__ import annotations

import asyncio
import datetime
from decimal import Decimal
from typing import Any

import pytest

import agentlib as faust


class Point(faust.Record, namespace="tests.parity.Point"):
    x: int
    y: int


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- @app.agent(key_type=, value_type=, schema=, topic kwargs) ------------------------

def test_agent_without_channel_takes_key_type_and_value_type():
    """Faust's Agent builds its own topic with ``key_type``/``value_type`` when it is
    given no channel (or a topic name): the agent sees typed keys and Records."""
    app = faust.App("parity-kv")

    @app.agent(key_type=str, value_type=Point)
    async def points(stream: faust.StreamT[Point]) -> Any:
        async for key, point in stream.items():
            yield (key, point.x + point.y)

    assert points.channel.key_type is str
    assert points.channel.value_type is Point

    async def scenario() -> Any:
        async with points.test_context() as ctx:
            await ctx.put({"x": 1, "y": 2}, key="k")
            return ctx.results[0]
    assert run(scenario()) == ("k", 3)


def test_agent_on_topic_name_takes_value_type_schema_and_topic_settings():
    app = faust.App("parity-named")

    @app.agent("named-points", value_type=Point, partitions=6)
    async def named(stream: Any) -> Any:
        async for point in stream:
            yield point

    assert named.channel.get_topic_name() == "named-points"
    assert named.channel.value_type is Point
    assert named.topic_partitions() == {"named-points": 6}

    @app.agent("schema-points", schema=faust.Schema(key_type=str, value_type=Point))
    async def with_schema(stream: Any) -> Any:
        async for point in stream:
            yield point

    assert with_schema.channel.key_type is str
    assert with_schema.channel.value_type is Point


def test_agent_given_a_topic_refuses_key_type_as_faust_does():
    """Faust asserts that key_type/value_type/schema come without a channel object;
    agentlib says so in one line instead of ignoring them."""
    app = faust.App("parity-refuse")
    topic = app.topic("given")
    with pytest.raises(TypeError, match="value_type"):
        @app.agent(topic, value_type=Point)
        async def refused(stream: Any) -> None:
            async for _ in stream:
                pass


def test_isolated_partitions_is_refused_in_one_line():
    """Faust runs one actor per partition with ``isolated_partitions=True``; agentd
    runs one agent coroutine per instance over all the partitions it owns, so the
    flag is refused rather than silently not honoured (docs/decisions.md)."""
    app = faust.App("parity-isolated")
    with pytest.raises(ValueError, match="isolated_partitions"):
        @app.agent(isolated_partitions=True)
        async def per_partition(stream: Any) -> None:
            async for _ in stream:
                pass


def test_agent_keeps_help_isolated_partitions_and_faust_topic_names():
    app = faust.App("parity-attrs")

    @app.agent(name="helped", help="adds things", isolated_partitions=False)
    async def helped(stream: Any) -> None:
        """Docstring."""
        async for _ in stream:
            pass

    assert helped.help == "adds things"
    assert helped.isolated_partitions is False
    assert list(helped.get_topic_names()) == ["parity-attrs-helped"]
    assert helped.info()["help"] == "adds things"


# -- Record class options: coerce=, date_parser=, include_metadata=, derive() ---------

def test_record_coerce_converts_fields_to_their_annotated_types():
    """Faust's ``coerce=True``: ints, floats, strs, Decimals and datetimes given in
    another form become the annotated type, when built and when decoded."""
    class Coerced(faust.Record, coerce=True, namespace="tests.parity.Coerced"):
        count: int
        ratio: float
        label: str
        price: Decimal
        when: datetime.datetime
        maybe: int | None = None

    made = Coerced(count="5", ratio="0.5", label=7, price="1.10",
                   when="2020-01-02T03:04:05")
    assert (made.count, made.ratio, made.label, made.price) == (5, 0.5, "7", Decimal("1.10"))
    assert made.when == datetime.datetime(2020, 1, 2, 3, 4, 5)
    assert made.maybe is None
    decoded = Coerced.loads(b'{"count": "6", "ratio": 1, "label": "x", "price": "2",'
                            b' "when": "2021-01-01T00:00:00"}')
    assert (decoded.count, decoded.ratio, decoded.price) == (6, 1.0, Decimal(2))
    assert isinstance(decoded.ratio, float)


def test_record_date_parser_parses_datetime_fields():
    def parse(text: Any) -> datetime.datetime:
        return datetime.datetime.strptime(text, "%d/%m/%Y")

    class Dated(faust.Record, coerce=True, date_parser=parse,
                namespace="tests.parity.Dated"):
        when: datetime.datetime

    assert Dated(when="02/01/2020").when == datetime.datetime(2020, 1, 2)
    assert Dated.from_data({"when": "03/01/2020"}).when == datetime.datetime(2020, 1, 3)


def test_record_include_metadata_false_leaves_out_the_faust_namespace():
    class Bare(faust.Record, include_metadata=False, namespace="tests.parity.Bare"):
        x: int

    assert Bare(x=1).dumps() == b'{"x":1}'
    assert Bare(x=1).to_representation() == {"x": 1}


def test_record_refuses_faust_options_it_lacks_in_one_clear_line():
    with pytest.raises(TypeError, match="decimals"):
        class Decimals(faust.Record, decimals=True):
            x: int


def test_record_derive_copies_with_fields_replaced():
    point = Point(x=1, y=2)
    assert point.derive(y=5) == Point(x=1, y=5)
    assert point.derive(Point(x=3, y=4), y=9) == Point(x=3, y=9)
    assert point == Point(x=1, y=2)


# -- timestamp= on send/cast/ask (Faust's, in seconds) --------------------------------

class _Handle:
    """Stands in for confluent_kafka's Producer: keeps each produce call's timestamp."""

    def __init__(self) -> None:
        self.timestamps: list[int] = []

    def produce(self, topic: str, value: Any, key: Any, *, partition: int, headers: Any,
                on_delivery: Any, timestamp: int = 0) -> None:
        self.timestamps.append(timestamp)


def test_send_cast_ask_and_topic_send_take_a_timestamp_in_seconds(monkeypatch):
    """Faust's ``Agent.send/cast/ask`` and ``Topic.send`` take ``timestamp=`` (seconds)
    and produce the message with that CreateTime."""
    from agentlib.kafka import KafkaProducer

    app = faust.App("parity-ts")
    handle = _Handle()
    monkeypatch.setattr(KafkaProducer, "_ensure", lambda self: handle)

    @app.agent("ts-in")
    async def stamped(stream: Any) -> Any:
        async for value in stream:
            yield value

    class Replies:
        topic = "replies"

        async def start(self) -> None:
            pass

        def expect(self, correlation_id: str) -> asyncio.Future[Any]:
            answer = asyncio.get_running_loop().create_future()
            answer.set_result("answered")
            return answer

    app._replies = Replies()  # type: ignore[assignment]

    async def scenario() -> None:
        for send in (stamped.send(value=1, timestamp=1.5),
                     stamped.cast(2, timestamp=2.5),
                     app.topic("ts-out").send(value=3, timestamp=3.5),
                     app.send("ts-out", value=4, timestamp=4.5)):
            task = asyncio.ensure_future(send)
            await asyncio.sleep(0)
            task.cancel()  # no delivery report comes from the stand-in
        assert await stamped.ask(5, timestamp=5.5) == "answered"
    run(scenario())
    assert handle.timestamps == [1500, 2500, 3500, 4500, 5500]


# -- map/join key= and reply_to=; App(reply_to=) --------------------------------------

def _client_app() -> tuple[faust.App, Any]:
    from test_agentlib_client import client_app
    return client_app()


def test_map_and_join_take_faust_key_and_reply_to_arguments():
    """Faust's ``map(values, key=None, reply_to=None)``/``join(...)``: ``key`` is every
    request's message key; ``reply_to`` may name this process's own reply topic."""
    app, producer = _client_app()

    @app.agent(app.topic("pow2"))
    async def pow2(stream: Any) -> Any:
        async for value in stream:
            yield value * value

    async def scenario() -> tuple[list[Any], list[Any]]:
        mapped = [reply async for reply in pow2.map([1, 2], key="k",
                                                     reply_to=app.replies.topic)]
        joined = await pow2.join([3, 4], key="j", reply_to=app.replies.topic)
        kv = await pow2.kvjoin([("a", 5)], reply_to=app.replies.topic)
        return sorted(mapped), joined + kv
    mapped, joined = run(scenario())
    assert (mapped, joined) == ([1, 4], [9, 16, 25])
    assert [sent.key for sent in producer.sent] == [b"k", b"k", b"j", b"j", b"a"]


def test_ask_with_a_reply_to_this_process_does_not_read_refuses_at_once():
    """Faust's asker subscribes to any ``reply_to``; agentd's reads one reply topic per
    process, so asking for answers elsewhere (which would never come back) fails in
    one line instead of waiting forever."""
    app, producer = _client_app()

    @app.agent(app.topic("pow2"))
    async def pow2(stream: Any) -> Any:
        async for value in stream:
            yield value * value

    with pytest.raises(ValueError, match="App\\(reply_to="):
        run(asyncio.wait_for(pow2.ask(2, reply_to="elsewhere"), 5))
    with pytest.raises(ValueError, match="App\\(reply_to="):
        run(asyncio.wait_for(pow2.join([2], reply_to="elsewhere"), 5))
    assert producer.sent == []


def test_app_reply_to_setting_names_the_reply_topic():
    """Faust's ``App(reply_to=...)`` setting: the topic this process's replies come to."""
    app = faust.App("parity-reply", broker="kafka://unused:1", reply_to="my-replies")
    assert app.replies.topic == "my-replies"


# -- event.message as Faust's Message; sinks need a yielding agent ----------------------

def test_event_message_has_faust_timestamp_in_seconds():
    """Faust's ``event.message.timestamp`` is the Kafka timestamp in seconds."""
    app = faust.App("parity-message")

    @app.agent()
    async def stamps(stream: Any) -> Any:
        async for event in stream.events():
            yield (event.message.timestamp, stream.current_event.message.timestamp)

    async def scenario() -> Any:
        async with stamps.test_context() as ctx:
            await ctx.put(1, timestamp=12.5)
            return ctx.results[0]
    assert run(scenario()) == (12.5, 12.5)


def test_sinks_on_an_agent_that_never_yields_are_refused():
    """Faust raises ImproperlyConfigured("Agent must yield to use sinks"): a sink on an
    agent without ``yield`` would never be called."""
    app = faust.App("parity-sinks")

    with pytest.raises(TypeError, match="must yield to use sinks"):
        @app.agent(sink=[print])
        async def silent(stream: Any) -> None:
            async for _ in stream:
                pass

    @app.agent()
    async def quiet(stream: Any) -> None:
        async for _ in stream:
            pass
    with pytest.raises(TypeError, match="must yield to use sinks"):
        quiet.add_sink(print)


# -- test_context().put as Faust's AgentTestWrapper.put -------------------------------

def test_test_context_put_takes_faust_positional_and_serializer_arguments():
    """Faust's ``put(value, key, partition, timestamp, headers, key_serializer,
    value_serializer, *, reply_to, correlation_id, wait)``."""
    app = faust.App("parity-put")

    @app.agent(app.topic("put-in", value_serializer="raw"))
    async def raw(stream: Any) -> Any:
        async for event in stream.events():
            yield (event.key, event.value, event.message.partition,
                   event.message.timestamp, dict(event.headers))

    async def scenario() -> Any:
        async with raw.test_context() as ctx:
            await ctx.put({"a": 1}, {"k": 2}, 3, 4.0, {"h": b"v"}, "json", "json")
            return ctx.results[0]
    assert run(scenario()) == (b'{"k":2}', b'{"a":1}', 3, 4.0, {"h": b"v"})


# -- Records hash by value; validate() lists errors, as Faust's -----------------------

def test_records_hash_by_their_fields_as_faust_records_do():
    assert hash(Point(x=1, y=2)) == hash(Point(x=1, y=2))
    assert {Point(x=1, y=2): "a"}[Point(x=1, y=2)] == "a"
    assert len({Point(x=1, y=2), Point(x=1, y=2), Point(x=2, y=1)}) == 2


def test_validate_returns_the_errors_and_validate_or_raise_raises():
    """Faust's ``validate()`` returns a list of ValidationErrors (empty when valid),
    ``is_valid()`` says whether it is empty and ``validate_or_raise()`` raises."""
    wrong = Point(x="1", y=2)  # no validation=True: built as given
    errors = wrong.validate()
    assert [type(error) for error in errors] == [faust.ValidationError]
    assert "Point.x" in str(errors[0])
    assert wrong.is_valid() is False
    assert [str(error) for error in wrong.validation_errors] == [str(errors[0])]
    with pytest.raises(faust.ValidationError, match=r"Point\.x"):
        wrong.validate_or_raise()
    assert Point(x=1, y=2).validate() == [] and Point(x=1, y=2).is_valid()


# -- Faust's Seconds: take(within=timedelta) ------------------------------------------

def test_take_within_accepts_a_timedelta():
    """Faust's ``within`` is ``Seconds``: a number or a ``timedelta``."""
    app = faust.App("parity-take")

    @app.agent()
    async def batches(stream: Any) -> Any:
        async for batch in stream.take(2, within=datetime.timedelta(seconds=30)):
            yield batch

    async def scenario() -> Any:
        async with batches.test_context() as ctx:
            await ctx.put(1)
            await ctx.put(2)
            return ctx.results
    assert run(scenario()) == {0: [1, 2], 1: [1, 2]}


# -- Record validation= implies coerce=; abstract=True models ---------------------------

def test_validation_implies_coerce_as_in_faust():
    """Faust sets ``coerce`` whenever ``validation=`` is given: a string for an int
    field is converted, not refused."""
    import faust as real_faust

    class FaustPoint(real_faust.Record, validation=True):
        x: int

    class Point(faust.Record, validation=True):
        x: int

    class FaustNote(real_faust.Record, validation=True):
        note: str = ""

    class Note(faust.Record, validation=True):
        note: str = ""

    assert FaustPoint(x="3").x == 3
    assert Point(x="3").x == 3 and Point(x="3").validate() == []
    assert FaustNote(note=5).note == Note(note=5).note == "5"
    with pytest.raises(ValueError):  # Faust's error type; agentd's ValidationError is one
        FaustPoint(x="many")
    with pytest.raises(faust.ValidationError, match=r"Point\.x: cannot convert 'many'"):
        Point(x="many")


def test_an_abstract_record_cannot_be_built_or_decoded_by_name_and_its_subclasses_can():
    """Faust's ``abstract=True``: a base class only; building one raises
    NotImplementedError, it is not registered by namespace, a subclass is a Record."""
    from agentlib.records import registry

    class Base(faust.Record, abstract=True):
        x: int

    class Concrete(Base):
        y: int = 0

    with pytest.raises(NotImplementedError, match="abstract"):
        Base(x=1)
    assert Base._namespace not in registry or registry[Base._namespace] is not Base
    assert Concrete(x=1) == Concrete(x=1, y=0)
    assert registry[Concrete._namespace] is Concrete


# -- Faust's field classes (faust.models.fields) -----------------------------------------

def test_field_classes_check_bounds_and_lengths_and_prepare_values_as_faust_does():
    """``StringField(max_length=, min_length=, trim_whitespace=)``, ``IntegerField(
    min_value=, max_value=)``, ``DecimalField(max_decimal_places=)``, ``required=False``:
    the same records are accepted and refused as Faust's (under ``validation=True``
    building one raises, else ``validate()`` lists the problems)."""
    from decimal import Decimal

    import faust as real_faust
    from faust.models import fields as faust_fields

    from agentlib.models import fields as ours

    def model(lib: Any, fields: Any, validation: bool) -> Any:
        class Item(lib.Record, validation=validation):
            name: str = fields.StringField(max_length=5, min_length=2, trim_whitespace=True)
            count: int = fields.IntegerField(max_value=120, required=False, default=1)
            price: Decimal = fields.DecimalField(max_decimal_places=2, required=False,
                                                 default=Decimal("1"))
            note: str = fields.StringField(required=False)
        return Item

    theirs, mine = model(real_faust, faust_fields, True), model(faust, ours, True)
    for given in ({"name": " ab "}, {"name": "toolong"}, {"name": "a"},
                  {"name": "abc", "count": 200}, {"name": "abc", "count": 7},
                  {"name": "abc", "price": Decimal("1.234")},
                  {"name": "abc", "price": Decimal("1.23")}):
        try:
            expected: Any = theirs(**given)
        except real_faust.exceptions.ValidationError:
            with pytest.raises(faust.ValidationError):
                mine(**given)
            continue
        built = mine(**given)
        assert (built.name, built.count, built.price, built.note) == \
            (expected.name, expected.count, expected.price, expected.note)
    assert mine(name=" ab ").name == "ab" and mine(name="abc").note is None

    lax = model(faust, ours, False)
    found = lax(name="toolong", count=200).validate()
    assert [str(error).split(":")[0] for error in found] == [
        "Item.name is longer than 5 characters", "Item.count is more than 120"]
    decoded = lax.loads(b'{"name": "  xy  "}')
    assert decoded.name == "xy"  # prepared when decoded too


def test_a_field_class_option_agentd_does_not_know_is_a_clear_error():
    from agentlib.models.fields import StringField

    with pytest.raises(TypeError, match="StringField: no option frobnicate"):
        StringField(frobnicate=True)
