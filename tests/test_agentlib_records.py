"""Records and codecs: Faust's wire format, byte for byte, checked against faust-streaming."""

from __future__ import annotations

import datetime
import json
import pickle
from typing import Any

import faust
import pytest

import agentlib
from agentlib import codecs
from agentlib.records import decode_known


class Add(agentlib.Record, namespace="tests.records.Add"):
    a: int
    b: int


class FaustAdd(faust.Record, namespace="tests.records.Add"):
    a: int
    b: int


class Point(agentlib.Record, namespace="tests.records.Point"):
    x: int
    y: int = 0


class Shape(agentlib.Record, namespace="tests.records.Shape"):
    name: str
    origin: Point
    corners: list[Point]
    labels: dict[str, Point]
    parent: Point | None = None


class Article(agentlib.Record, isodates=True, namespace="tests.records.Article"):
    url: str
    date_published: datetime.datetime


class FaustArticle(faust.Record, isodates=True, namespace="tests.records.Article"):
    url: str
    date_published: datetime.datetime


class Strict(agentlib.Record, validation=True, namespace="tests.records.Strict"):
    count: int
    ratio: float


def test_record_encodes_exactly_like_the_faust_wire_format():
    assert Add(2, 2).dumps() == b'{"a":2,"b":2,"__faust":{"ns":"tests.records.Add"}}'
    assert Add(a=4, b=8).dumps() == FaustAdd(a=4, b=8).dumps(serializer="json")


def test_default_namespace_is_module_and_class_name():
    class Local(agentlib.Record):
        v: int
    assert Local(1).to_representation() == {
        "v": 1, "__faust": {"ns": f"{__name__}.{Local.__qualname__}"}}


def test_positional_and_keyword_construction_and_faust_repr():
    assert Add(4, 8) == Add(a=4, b=8)
    assert repr(Add(4, 8)) == "<Add: a=4, b=8>"
    assert repr(FaustAdd(4, 8)) == "<FaustAdd: a=4, b=8>"  # the same form in Faust
    with pytest.raises(TypeError, match="unexpected argument: c"):
        Add(a=1, b=2, c=3)
    with pytest.raises(TypeError, match="missing required fields: b"):
        Add(1)


def test_class_attribute_is_a_field_descriptor_usable_as_a_key():
    field = Point.x
    assert isinstance(field, agentlib.FieldDescriptor)
    assert field.ident == "Point.x"  # as in Faust: the default group_by name
    assert field.getattr(Point(7, 1)) == 7
    assert Point(3).y == 0


def test_faust_bytes_decode_into_agentlib_records():
    data = FaustAdd(a=3, b=9).dumps(serializer="json")
    decoded = Add.loads(data)
    assert (decoded.a, decoded.b) == (3, 9)


def test_agentlib_bytes_decode_into_faust_records():
    data = Add(5, 6).dumps()
    decoded = FaustAdd.loads(data, serializer="json")
    assert (decoded.a, decoded.b) == (5, 6)


def test_isodates_round_trip_with_faust_in_both_directions():
    when = datetime.datetime(2024, 5, 17, 10, 30, 5, 123000, tzinfo=datetime.UTC)
    ours = Article("https://example.org", when).dumps()
    theirs = FaustArticle("https://example.org", when).dumps(serializer="json")
    assert ours == theirs
    assert Article.loads(theirs).date_published == when
    assert FaustArticle.loads(ours, serializer="json").date_published == when


def test_value_without_faust_metadata_decodes_by_declared_type():
    assert Add.from_data({"a": 1, "b": 2}) == Add(1, 2)


def test_nested_records_round_trip_even_without_faust_metadata():
    shape = Shape("tri", Point(0, 0), [Point(1, 0), Point(0, 1)], {"top": Point(5, 5)})
    assert Shape.loads(shape.dumps()) == shape
    plain = {"name": "sq", "origin": {"x": 1}, "corners": [{"x": 2, "y": 3}],
             "labels": {}, "parent": {"x": 9}}
    decoded = Shape.from_data(plain)
    assert decoded.origin == Point(1, 0)
    assert decoded.corners == [Point(2, 3)]
    assert decoded.parent == Point(9, 0)


def test_registry_decodes_by_namespace_when_no_type_is_declared():
    payload = json.loads(Add(1, 2).dumps())
    assert decode_known(payload) == Add(1, 2)
    assert decode_known({"plain": [1, 2]}) == {"plain": [1, 2]}


def test_validation_rejects_values_of_the_wrong_type():
    assert Strict(1, 2).ratio == 2
    with pytest.raises(agentlib.ValidationError, match=r"Strict\.count"):
        Strict("many", 0.5)


def test_unknown_codec_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown codec 'nope'"):
        codecs.get_codec("nope")


@pytest.mark.parametrize("name, value", [
    ("json", {"a": [1, "x"]}), ("raw", b"\x00\xff"), ("binary", b"\x00\xff"),
    ("pickle", {"a": (1, 2)}), ("json|binary", {"k": 1}),
])
def test_codecs_round_trip_and_match_faust_bytes(name: str, value: Any):
    from faust.serializers import codecs as faust_codecs
    ours = codecs.dumps(name, value)
    if name != "pickle":  # pickle bytes depend on the protocol, not the format
        assert ours == faust_codecs.dumps(name, value)
    assert codecs.loads(name, ours) == value


def test_user_codec_is_used_by_topics_that_name_it():
    class Upper:
        def dumps(self, obj: Any) -> bytes:
            return str(obj).upper().encode()

        def loads(self, data: bytes) -> Any:
            return data.decode().lower()

    codecs.register("upper-test", Upper())
    topic = agentlib.App("codec-test").topic("t", value_serializer="upper-test")
    assert topic.encode_value("hello") == b"HELLO"
    assert topic.decode_value(topic.load_value(b"HELLO")) == "hello"


def test_pickle_is_never_the_default_for_topics():
    app = agentlib.App("pickle-test")
    topic = app.topic("t")
    with pytest.raises(codecs.CodecError):
        topic.load_value(pickle.dumps({"a": 1}))


def test_records_defined_inside_functions_still_rebuild_nested_fields():
    class Inner(agentlib.Record, namespace="tests.records.Inner"):
        n: int

    class Outer(agentlib.Record, namespace="tests.records.Outer"):
        inner: Inner
        when: datetime.datetime

    decoded = Outer.from_data({"inner": {"n": 1}, "when": "2020-01-01T00:00:00"})
    assert decoded.inner == Inner(1)
    assert decoded.when == "2020-01-01T00:00:00"  # no isodates: left as sent


class Mixed(agentlib.Record, namespace="tests.records.Mixed"):
    count: int
    name: str
    flag: bool
    tags: list[str]
    score: float | None = None


class FaustMixed(faust.Record, namespace="tests.records.Mixed"):
    count: int
    name: str
    flag: bool
    tags: list[str]
    score: float | None = None


def test_generated_records_match_faust_bytes_and_decode_both_ways():
    from faust.utils import json as faust_json
    from hypothesis import given, settings
    from hypothesis import strategies as st

    faust_uses_stdlib_json = getattr(faust_json, "orjson", None) is None

    @settings(max_examples=200, deadline=None)
    @given(count=st.integers(min_value=-(2**63), max_value=2**63 - 1), name=st.text(),
           flag=st.booleans(), tags=st.lists(st.text(max_size=5), max_size=4),
           score=st.none() | st.floats(allow_nan=False, allow_infinity=False))
    def check(count: int, name: str, flag: bool, tags: list[str], score: float | None):
        ours = Mixed(count, name, flag, tags, score)
        theirs = FaustMixed(count, name, flag, tags, score)
        our_bytes = ours.dumps()
        their_bytes = theirs.dumps(serializer="json")
        if faust_uses_stdlib_json:  # the same bytes: agentd writes JSON as Faust does
            assert our_bytes == their_bytes
        else:  # Faust with orjson escapes and formats floats its own way
            assert json.loads(our_bytes) == json.loads(their_bytes)
        assert Mixed.loads(their_bytes) == ours
        assert FaustMixed.loads(our_bytes, serializer="json").asdict() == theirs.asdict()

    check()


class _Reversed(agentlib.Codec):
    """A Faust-style user codec: only ``_dumps``/``_loads`` are written."""

    def _dumps(self, obj: Any) -> bytes:
        return bytes(reversed(json.dumps(obj).encode()))

    def _loads(self, data: bytes) -> Any:
        return json.loads(bytes(reversed(data)))


codecs.register("reversed-test", _Reversed())


class Reading(agentlib.Record, serializer="reversed-test", namespace="tests.records.Reading"):
    sensor: str
    value: float


def test_faust_style_codec_subclass_is_registered_by_name_for_topics_and_records():
    from agentlib.serializers import codecs as faust_path_codecs
    assert faust_path_codecs.get_codec("reversed-test") is codecs.get_codec("reversed-test")
    reading = Reading("t1", 1.5)
    assert reading.dumps() == bytes(reversed(json.dumps(reading.to_representation()).encode()))
    assert Reading.loads(reading.dumps()) == reading
    topic = agentlib.App("user-codec").topic("readings", value_type=Reading)
    data = topic.encode_value(reading)
    assert data == reading.dumps()
    assert topic.decode_value(topic.load_value(data)) == reading


def test_user_codecs_chain_with_the_pipe_operator_and_by_name():
    chained = _Reversed() | codecs.get_codec("binary")
    data = chained.dumps({"k": 1})
    assert data == codecs.dumps("reversed-test|binary", {"k": 1})
    assert chained.loads(data) == {"k": 1}


def test_register_refuses_an_object_that_is_not_a_codec():
    with pytest.raises(TypeError, match="dumps"):
        codecs.register("broken-test", object())  # type: ignore[arg-type]


class Typed(agentlib.Record, validation=True, namespace="tests.records.Typed"):
    count: int
    tags: list[str]
    parent: Point | None = None
    note: str | None = None


def test_validation_accepts_optional_unions_and_container_types():
    assert Typed(1, ["a"]).parent is None
    assert Typed(1, [], Point(1, 2), "n").parent == Point(1, 2)
    assert Typed.from_data({"count": 2, "tags": [], "parent": {"x": 1}}).parent == Point(1)
    with pytest.raises(agentlib.ValidationError, match=r"Typed\.parent"):
        Typed(1, [], parent="not a point")


@pytest.mark.parametrize("fields, wrong", [
    ({"count": True, "tags": []}, "Typed.count"),
    ({"count": 1, "tags": "abc"}, "Typed.tags"),
    ({"count": "many", "tags": []}, "Typed.count"),  # validation coerces: "3" would do
])
def test_validation_rejects_wrong_types_when_built_and_when_decoded(fields: dict[str, Any],
                                                                    wrong: str):
    with pytest.raises(agentlib.ValidationError, match=wrong):
        Typed(**fields)
    with pytest.raises(agentlib.ValidationError, match=wrong):
        Typed.loads(json.dumps(fields).encode())


class Event(agentlib.Record, isodates=True, namespace="tests.records.Event"):
    name: str
    at: datetime.datetime
    until: datetime.datetime | None = None


class FaustEvent(faust.Record, isodates=True, namespace="tests.records.Event"):
    name: str
    at: datetime.datetime
    until: datetime.datetime | None = None


def test_isodates_parses_optional_datetimes_from_faust_bytes():
    start = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    end = datetime.datetime(2024, 1, 3, tzinfo=datetime.UTC)
    decoded = Event.loads(FaustEvent("e", start, end).dumps(serializer="json"))
    assert (decoded.at, decoded.until) == (start, end)
    assert Event.loads(FaustEvent("e", start).dumps(serializer="json")).until is None
    assert FaustEvent.loads(Event("e", start, end).dumps(), serializer="json").until == end


def test_namespace_decides_the_record_a_value_decodes_to():
    class Renamed(agentlib.Record, namespace="tests.records.renamed-v2"):
        v: int

    payload = json.loads(Renamed(3).dumps())
    assert payload["__faust"] == {"ns": "tests.records.renamed-v2"}
    assert decode_known(payload) == Renamed(3)
    assert agentlib.App("ns").topic("t").decode_value(payload) == Renamed(3)


def test_from_data_runs_every_step_on_every_decode_not_only_the_first():
    """The first from_data resolves a class's converters and picks its fast way for
    plain models; later decodes must still fill defaults, run __post_init__, parse
    isodates and validate, and refuse a missing field."""
    seen: list[int] = []

    class Plain(agentlib.Record, namespace="t.fd.plain"):
        a: int
        b: str = "dflt"

    class Hooked(agentlib.Record, namespace="t.fd.hooked"):
        a: int

        def __post_init__(self) -> None:
            seen.append(self.a)

    class Dated(agentlib.Record, namespace="t.fd.dated", isodates=True):
        at: datetime.datetime

    class Checked(agentlib.Record, namespace="t.fd.checked", validation=True):
        a: int

    for _ in range(3):
        assert Plain.from_data({"a": 1, "b": "x", "__faust": {"ns": "t.fd.plain"}}) == \
            Plain(a=1, b="x")
        assert Plain.from_data({"a": 2}) == Plain(a=2, b="dflt")
        with pytest.raises(TypeError, match="missing required fields: a"):
            Plain.from_data({"b": "x"})
        with pytest.raises(TypeError, match="expected a JSON object"):
            Plain.from_data([1])  # type: ignore[arg-type]
        assert Hooked.from_data({"a": 5}).a == 5
        assert Dated.from_data({"at": "2026-01-02T03:04:05Z"}).at == \
            datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        with pytest.raises(agentlib.records.ValidationError):
            Checked.from_data({"a": "not an int"})
    assert seen == [5, 5, 5]


def test_the_seams_per_message_from_data_function_decodes_as_from_data():
    """event_decoder calls Record._from_data_function()'s result per message: for
    every input it must build what from_data builds, or raise what it raises."""

    class Bare(agentlib.Record, namespace="t.fdf.bare"):
        a: int
        b: str = "dflt"

    class Hooked(agentlib.Record, namespace="t.fdf.hooked"):
        a: int

        def __post_init__(self) -> None:
            self.a += 1

    class Nested(agentlib.Record, namespace="t.fdf.nested"):
        inner: Bare

    inputs: list[Any] = [{"a": 1, "b": "x"}, {"a": 1}, {"b": "x"}, {"a": 1, "extra": 2},
                         {"inner": {"a": 3}}, [1], "s", None]
    for model in (Bare, Hooked, Nested):
        function = model._from_data_function()
        for data in inputs * 2:
            try:
                expected: Any = model.from_data(data)
            except Exception as exc:
                expected = type(exc)
            try:
                got: Any = function(data)
            except Exception as exc:
                got = type(exc)
            assert got == expected, (model, data)
            assert type(got) is type(expected)


def test_a_topic_without_value_type_decodes_records_however_their_json_spells_it():
    """event_decoder skips decode_known's walk for JSON with no "__faust" and no escape
    in its bytes; a Record nested anywhere, or spelled with escapes, still decodes."""
    from agentlib.decoding import event_decoder
    from agentlib.rawrecord import new_raw_record

    app = agentlib.App("records-decode", broker="kafka://unused:1")
    decode = event_decoder(app.topic("in"))

    def value_of(data: bytes) -> Any:
        return decode(new_raw_record("in", 0, 0, None, None, data, ()), None).value

    plain = {"id": 1, "amount": 2.5, "tags": ["a", {"b": None}]}
    assert value_of(json.dumps(plain).encode()) == plain
    nested = {"items": [Add(1, 2).to_representation()]}
    assert value_of(json.dumps(nested).encode()) == {"items": [Add(1, 2)]}
    escaped = b'{"a":1,"b":2,"\\u005f_faust":{"ns":"tests.records.Add"}}'
    assert value_of(escaped) == Add(1, 2)
    assert value_of(json.dumps({"text": "caf\u00e9"}).encode()) == {"text": "caf\u00e9"}
