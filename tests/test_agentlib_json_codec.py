"""The json codec decodes exactly as ``json.loads`` does, for every input.

Its ``loads`` tries msgspec first and leaves whatever msgspec refuses to json.loads
(agentlib/codecs.py), so the risk is an input msgspec *accepts* and decodes otherwise
than json.loads, or accepts where json.loads raises. These tests compare the two
differentially on generated JSON texts (any JSON value, big integers and any unicode
included, written in every way json.dumps can write it, in UTF-8/16/32, with BOMs,
padding and trailing data), on mutations of such texts, on number literals and on
arbitrary bytes. "The same" means the same value with the same types all the way
down (float bits, dict key order); or both raise: the codec raises json.loads' own
exception, except that its decode errors (JSONDecodeError, UnicodeDecodeError) come
out as CodecError caused by that same exception (the codec's contract).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentlib import codecs

_loads = codecs.get_codec("json").loads

_SETTINGS = settings(max_examples=1500, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


def _same(a: Any, b: Any) -> bool:
    """Equal values with equal types everywhere (floats by their bits, NaN as NaN, dict
    key order included); iterative, for deeply nested values."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if (x.hex() != y.hex()) if not math.isnan(x) else not math.isnan(y):
                return False
        elif isinstance(x, dict):
            if list(x) != list(y):
                return False
            pending.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif x != y:
            return False
    return True


def _outcome(fun: Any, data: Any) -> tuple[str, Any]:
    try:
        return "value", fun(data)
    except Exception as exc:
        return "error", exc


def assert_decodes_as_json_loads(data: Any) -> None:
    expected_kind, expected = _outcome(json.loads, data)
    got_kind, got = _outcome(_loads, data)
    if expected_kind == "value":
        assert got_kind == "value", f"{data!r}: json.loads gives {expected!r}, codec raised {got!r}"
        assert _same(got, expected), f"{data!r}: json.loads gives {expected!r}, codec {got!r}"
        return
    assert got_kind == "error", f"{data!r}: json.loads raises {expected!r}, codec gave {got!r}"
    if isinstance(expected, json.JSONDecodeError | UnicodeDecodeError):
        assert type(got) is codecs.CodecError, (data, got)
        assert type(got.__cause__) is type(expected), (data, got.__cause__, expected)
        assert str(got) == f"not JSON: {expected}"
    else:
        assert type(got) is type(expected), (data, got, expected)


_scalars = (st.none() | st.booleans() | st.integers()
            | st.integers(min_value=-(10 ** 80), max_value=10 ** 80)
            | st.sampled_from([2 ** 63 - 1, 2 ** 63, -(2 ** 63) - 1, 2 ** 64, -(2 ** 64),
                               10 ** 4299, -(10 ** 4299), 2 ** 53 + 1])
            | st.floats() | st.floats(allow_nan=False, allow_infinity=False, width=32)
            | st.text() | st.text(alphabet=st.characters(codec="utf-8")))
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20)


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """A JSON value written as json.dumps can write it, in one of json.loads' encodings."""
    value = draw(_values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()),
                      indent=draw(st.none() | st.integers(0, 2) | st.just("\t")),
                      separators=draw(st.sampled_from([None, (",", ":"), (", ", ": ")])),
                      sort_keys=draw(st.booleans()))
    text = draw(st.sampled_from(["", " ", "\n", "\t\r\n "])) + text + \
        draw(st.sampled_from(["", " ", "\n", "\r\n\t", " x", ",", "]", "}", "\x00", "1"]))
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "utf-16-le", "utf-16-be",
                                                      "utf-16", "utf-32-le", "utf-32"]))
    return text.encode(encoding, "surrogatepass")


@_SETTINGS
@given(json_texts())
def test_json_texts_of_any_value_decode_as_json_loads(data: bytes):
    assert_decodes_as_json_loads(data)


@_SETTINGS
@given(json_texts(), st.data())
def test_damaged_json_texts_decode_or_fail_as_json_loads(data: bytes, draw: st.DataObject):
    """One byte inserted, replaced or deleted: where msgspec might be laxer."""
    pos = draw.draw(st.integers(0, len(data)))
    byte = draw.draw(st.binary(min_size=1, max_size=1) | st.sampled_from(
        [b"\x00", b"\x1f", b"\x7f", b"\\", b'"', b"\xed", b"\xc0", b"\xff", b"e", b"-", b"."]))
    how = draw.draw(st.sampled_from(["insert", "replace", "delete"]))
    if how == "insert":
        data = data[:pos] + byte + data[pos:]
    elif how == "replace":
        data = data[:pos] + byte + data[pos + 1:]
    else:
        data = data[:pos] + data[pos + 1:]
    assert_decodes_as_json_loads(data)


@_SETTINGS
@given(st.binary(max_size=64) | st.binary(max_size=8).map(lambda b: b'{"a":"' + b + b'"}'))
@example(b"\xef\xbb\xbf{}")
@example(b'"\xed\xa0\x80"')
@example(b"1\x00")
def test_arbitrary_bytes_decode_or_fail_as_json_loads(data: bytes):
    assert_decodes_as_json_loads(data)


_NUMBER = r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,4})?"


@_SETTINGS
@given(st.from_regex(_NUMBER, fullmatch=True) | st.floats().map(repr))
@example("1e400")
@example("-1e-400")
@example("2.4703282292062328e-324")
@example("1.7976931348623158e308")
@example("9007199254740993.0")
@example("-0")
@example("-0.0")
def test_number_literals_decode_as_json_loads(number: str):
    """Float rounding, overflow to inf, underflow to 0, -0 and -0.0, big integers."""
    for text in (number, f"[{number}]", f'{{"n":{number}}}'):
        assert_decodes_as_json_loads(text.encode())


@_SETTINGS
@given(st.text(alphabet=st.characters(), max_size=12), st.booleans())
@example("\ud800", True)
@example("\ud83d\ude00", True)
@example("\ud83dA", True)
@example("\ud83d\ude00", False)
def test_strings_with_any_code_point_decode_as_json_loads(text: str, ascii_only: bool):
    """Escaped or raw UTF-8: surrogates (lone, paired, encoded), control characters."""
    assert_decodes_as_json_loads(json.dumps(text, ensure_ascii=ascii_only)
                                 .encode("utf-8", "surrogatepass"))
    raw = b'"' + text.encode("utf-8", "surrogatepass") + b'"'  # control chars unescaped
    assert_decodes_as_json_loads(raw)


@pytest.mark.parametrize("digits", [4299, 4300, 4301, 5000])
def test_integers_at_the_digit_limit_decode_or_fail_as_json_loads(digits: int):
    assert sys.get_int_max_str_digits() == 4300
    for text in ("7" * digits, "-" + "7" * digits, f'{{"n":{"7" * digits}}}'):
        assert_decodes_as_json_loads(text.encode())


def test_a_lowered_digit_limit_is_honoured_as_json_loads_honours_it():
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        for digits in (640, 641, 1000):
            assert_decodes_as_json_loads(b"[" + b"9" * digits + b"]")
    finally:
        sys.set_int_max_str_digits(before)


@pytest.mark.parametrize("depth", [1, 100, 255, 256, 257, 400, 600, 2000, 20000])
@pytest.mark.parametrize("shape", ["list", "dict", "both"])
def test_deep_nesting_decodes_or_fails_as_json_loads(depth: int, shape: str):
    """Away from the recursion limit's exact edge (where the caller's own stack depth
    decides, for json.loads as much as for the codec)."""
    opener, closer = {"list": (b"[", b"]"), "dict": (b'{"k":', b"}"),
                      "both": (b'[{"k":', b"}]")}[shape]
    assert_decodes_as_json_loads(opener * depth + b"1" + closer * depth)


def _first_failing_depth(fun: Any, opener: bytes, closer: bytes) -> int:
    """The least nesting depth at which ``fun``, called from here, raises RecursionError."""
    lo, hi = 1, 20_000  # fun(depth hi) fails, fun(depth lo) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            fun(opener * mid + b"1" + closer * mid)
        except RecursionError:
            hi = mid
        else:
            lo = mid
    return hi


@pytest.mark.parametrize(("opener", "closer"), [(b"[", b"]"), (b'{"k":', b"}"),
                                                (b' [{"k":', b"}]"), (b"\n[", b"]")])
def test_nesting_fails_at_the_depth_where_json_loads_fails(opener: bytes, closer: bytes):
    """Called from the same frame, the codec meets the recursion limit at exactly
    json.loads' depth (msgspec alone would go a few levels deeper)."""
    assert _first_failing_depth(_loads, opener, closer) == \
        _first_failing_depth(json.loads, opener, closer)


def test_many_brackets_without_depth_decode_as_json_loads():
    """More than _SHALLOW brackets take the stdlib path: same value."""
    data = json.dumps([{"i": i, "v": [i]} for i in range(300)]).encode()
    assert_decodes_as_json_loads(data)


@pytest.mark.parametrize("data", ['{"a": 1}', bytearray(b'{"a": [1]}'), "\ufeff{}", "[NaN]"])
def test_str_and_bytearray_decode_as_json_loads(data: Any):
    assert_decodes_as_json_loads(data)


# -- dumps: json_dumps writes the stdlib encoder's bytes, whichever path it takes ------

_stdlib_dumps = json.JSONEncoder(separators=(",", ":"), default=codecs._json_default).encode

_dumps_scalars = (st.none() | st.booleans() | st.integers() | st.text()
            | st.floats(allow_nan=True, allow_infinity=True)
            | st.sampled_from([1e16, -1e16, 1e-4, 1e-5, -0.0, 9999999999999998.0, 5e-324])
            | st.text(alphabet=st.characters(max_codepoint=0x80)))
_dumps_values = st.recursive(_dumps_scalars, lambda inner: (
    st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4)),
    max_leaves=20)


@_SETTINGS
@given(_dumps_values)
@example({"id": 1, "amount": 12.5, "kind": "dépôt", "n": None, "ok": True})
@example({"deep": [[[[[[{"a": 1.0}]]]]]]})
@example({"del": "\x7f", 1: 2})
def test_json_dumps_writes_what_the_stdlib_encoder_writes(value: Any):
    assert codecs.json_dumps(value) == _stdlib_dumps(value).encode()


def test_json_dumps_of_types_msgspec_writes_otherwise_falls_back_to_the_stdlib():
    import datetime
    import decimal
    import enum

    class Colour(enum.IntEnum):
        RED = 1

    value = {"at": datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
             "price": decimal.Decimal("1.50"), "colour": Colour.RED, "tags": {"x"},
             "raw": [float("nan"), float("inf")]}
    assert codecs.json_dumps(value) == (
        b'{"at":"2026-01-02T00:00:00Z","price":"1.50","colour":1,"tags":["x"],'
        b'"raw":[NaN,Infinity]}')
