"""Codecs: how a key or value becomes bytes on the wire and back, chosen by name.

Faust's serializer names are kept (``json``, ``raw``, ``pickle``, ``binary``) so a
topic declared with ``value_serializer="json"`` means the same bytes in both systems.
Names combine with ``|`` as in Faust: ``"json|binary"`` dumps with ``json`` then
``binary`` and loads in the opposite order.

Pickle is registered but never picked by default: data from Kafka is unpickled only
when the user named the ``pickle`` codec for that topic (DESIGN.md §6).

The JSON form is compact (no spaces, ASCII) like the bytes faust-streaming writes, and
encodes what Faust's encoder does: datetimes as ISO 8601 (UTC as ``Z``, dates as
midnight), ``Decimal`` and ``UUID`` as strings, enums by value, sets as lists,
Records as their ``__faust`` representation.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import json
import pickle
import uuid
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, Protocol, runtime_checkable

import msgspec

__all__ = ["Codec", "CodecError", "CodecLike", "dumps", "get_codec", "json_dumps", "loads",
           "register"]


class CodecError(ValueError):
    """Bytes that the chosen codec cannot turn into a value (or the reverse)."""


@runtime_checkable
class CodecLike(Protocol):
    """What a codec must offer: any object with these two methods can be registered."""

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class Codec:
    """Base class for user codecs, used as in Faust: override ``_dumps``/``_loads``.

    ``codecs.register("name", MyCodec())`` makes it available to topics
    (``value_serializer="name"``) and Records (``serializer="name"``).
    ``a | b`` chains two codecs: dumps runs ``a`` then ``b``, loads the reverse.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj`` (calls ``_dumps``)."""
        return self._dumps(obj)

    def loads(self, data: bytes) -> Any:
        """Decode ``data`` (calls ``_loads``)."""
        return self._loads(data)

    def _dumps(self, obj: Any) -> bytes:
        raise NotImplementedError(f"{type(self).__name__} must define _dumps")

    def _loads(self, data: bytes) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define _loads")

    def __or__(self, other: CodecLike) -> Codec:
        return _Chain([self, other])


def _json_default(obj: Any) -> Any:
    """Types the stdlib encoder refuses, encoded as Faust's JSON encoder does."""
    to_representation = getattr(obj, "to_representation", None)
    if to_representation is not None:
        return to_representation()
    if isinstance(obj, datetime.date):
        if not isinstance(obj, datetime.datetime):  # Faust writes dates as midnight
            obj = datetime.datetime(obj.year, obj.month, obj.day)
        text = obj.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(obj, datetime.time):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal | uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON: {obj!r}")


#: ``json.dumps(obj, separators=(",", ":"), default=_json_default)`` without building a
#: JSONEncoder per call (json.dumps does for any non-default argument): one encoder,
#: stateless between calls. A table write encodes its key and value with it.
_json_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


def json_dumps(obj: Any) -> bytes:
    """Compact ASCII JSON, the bytes faust-streaming writes for the same object.

    Non-ASCII text is ``\\u``-escaped as faust-streaming does with the stdlib
    encoder (its default install; with the optional orjson it writes raw UTF-8,
    which decodes to the same values).

    The stdlib encoder costs ~2 us for a 6-field dict, most of it in setting itself
    up per call; a sink output and a table write each encode a value on the worker's
    hot path. So an int or str is written directly, and a dict or list of plain
    values (:func:`_msgspec_writes_as_stdlib`) by msgspec (~0.3 us) when its bytes are
    printable ASCII: then they are exactly the stdlib's. Everything else (and any
    doubt) goes to the stdlib encoder.
    """
    kind = type(obj)
    if kind is int:
        return int.__repr__(obj).encode()
    if kind is str:
        return encode_basestring_ascii(obj).encode()
    if (kind is dict or kind is list) and _msgspec_writes_as_stdlib(obj, _PLAIN_DEPTH):
        data = _msgspec_encode(obj)
        if data.isascii() and b"\x7f" not in data:
            return data
    return _json_encode(obj).encode()


#: msgspec's JSON encoder: for the values of :func:`_msgspec_writes_as_stdlib` only.
_msgspec_encode = msgspec.json.Encoder().encode
#: Scalars msgspec writes as the stdlib does (str: if the result is printable ASCII).
_PLAIN_SCALARS = frozenset((str, int, bool, type(None)))
#: Containers checked at most this deep for the msgspec path (deeper: stdlib).
_PLAIN_DEPTH = 4


def _msgspec_writes_as_stdlib(obj: Any, depth: int) -> bool:
    """Whether msgspec writes ``obj`` (a dict, list or tuple) as the stdlib encoder
    would, given that the result is printable ASCII (non-ASCII text and DEL are
    escaped only by the stdlib). Str keys; str, int, bool and None values; floats in
    the range where ``repr`` writes no exponent (msgspec writes ``1e16``, the stdlib
    ``1e+16``; NaN and infinities are ``null`` in msgspec); nested dicts, lists and
    tuples of the same. Anything else (datetimes, Decimals, Records, enums, int
    subclasses) gets the stdlib's encoder and its ``default``, as before."""
    if type(obj) is dict:
        for key in obj:
            if type(key) is not str:
                return False
        values: Any = obj.values()
    else:
        values = obj
    for value in values:
        kind = type(value)
        if kind in _PLAIN_SCALARS:
            continue
        if kind is float:
            if not -1e16 < value < 1e16 or (value and -1e-4 < value < 1e-4):
                return False
        elif kind is dict or kind is list or kind is tuple:
            if not depth or not _msgspec_writes_as_stdlib(value, depth - 1):
                return False
        else:
            return False
    return True


#: json.loads' own decoder (default settings), called directly on the hot path.
_json_decode = json.JSONDecoder().decode
#: First bytes for which json.loads' encoding detection can only answer UTF-8 when the
#: second byte is not NUL (no BOM starts with them).
_UTF8_OPENERS = frozenset((b"{", b"["))
#: msgspec's untyped JSON decoder: about 5x faster than json.loads on an agent record.
_msgspec_decode = msgspec.json.Decoder().decode
#: Texts with more ``[``/``{`` bytes than this skip msgspec (see :meth:`_Json.loads`).
_SHALLOW = 256


class _Json:
    #: json_dumps itself, not a method calling it: one Python frame less for every
    #: value a sink or a table write encodes.
    dumps = staticmethod(json_dumps)

    def loads(self, data: bytes) -> Any:
        """What ``json.loads(data)`` returns; its decode errors raised as CodecError.

        msgspec decodes first. Everything it accepts, json.loads decodes to the same
        value (big integers stay ints; tests/test_agentlib_json_codec.py checks it
        differentially), and it is stricter everywhere else: NaN/Infinity, numbers
        that overflow a float, lone surrogates (escaped or UTF-8 encoded), a BOM,
        UTF-16/32, NUL bytes, integers over ``sys.get_int_max_str_digits()``. Whatever
        it refuses, json.loads decides, so its value or its error is the answer.

        The one thing msgspec would accept that json.loads may not is nesting close
        to the recursion limit (msgspec's limit sits a few levels deeper): texts
        with more than ``_SHALLOW`` brackets go to json.loads directly, which is
        exact unless the caller is already within ``_SHALLOW`` frames of the limit.
        """
        if type(data) is bytes and (len(data) <= _SHALLOW or
                                    data.count(b"[") + data.count(b"{") <= _SHALLOW):
            try:
                return _msgspec_decode(data)
            except Exception:  # msgspec refuses it: json.loads' own outcome decides
                pass
        # Inline, not a helper: the stack under the decoder must be json.loads' own
        # (as deep as json.loads called from here), so nesting fails at the same depth.
        try:
            if type(data) is bytes:
                # json.loads' own steps for bytes; detect_encoding's checks skipped
                # where they can only answer UTF-8.
                encoding = "utf-8" if data[:1] in _UTF8_OPENERS and data[1:2] != b"\x00" \
                    else json.detect_encoding(data)
                return _json_decode(data.decode(encoding, "surrogatepass"))
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CodecError(f"not JSON: {exc}") from exc


class _Raw:
    """Bytes as they are; ``str`` is UTF-8 encoded (Faust's ``raw``)."""

    def dumps(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, str):
            return obj.encode()
        if isinstance(obj, bytearray | memoryview):
            return bytes(obj)
        raise CodecError(f"raw codec needs bytes or str, got {type(obj).__name__}")

    def loads(self, data: bytes) -> Any:
        return data


class _Binary:
    """Base64, for binary payloads inside text-only systems."""

    def dumps(self, obj: Any) -> bytes:
        return base64.b64encode(_Raw().dumps(obj))

    def loads(self, data: bytes) -> Any:
        try:
            return base64.b64decode(data, validate=True)
        except ValueError as exc:
            raise CodecError(f"not base64: {exc}") from exc


class _Pickle:
    """Only ever used when a topic names it: unpickling runs code from the data."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class _CloudPickle:
    """What a channel carries: any Python object, lambdas and local classes included.

    Channel messages never come from Kafka: only this app's own instances produce
    them, through the supervisor's memory, so unpickling them trusts nothing foreign.
    """

    def dumps(self, obj: Any) -> bytes:
        import cloudpickle
        return bytes(cloudpickle.dumps(obj))

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


_registry: dict[str, CodecLike] = {
    "json": _Json(), "raw": _Raw(), "binary": _Binary(), "pickle": _Pickle(),
    "cloudpickle": _CloudPickle(),
}


def register(name: str, codec: CodecLike) -> None:
    """Make ``codec`` available as ``name`` to topics, keys, values and Records."""
    if not isinstance(codec, CodecLike):
        raise TypeError(f"codec {name!r} needs dumps() and loads(), got {codec!r}")
    if "|" in name:
        raise ValueError(f"codec name must not contain '|': {name!r}")
    _registry[name] = codec


def get_codec(name: str | CodecLike) -> CodecLike:
    """The codec called ``name`` (a chain for ``"a|b"``); a Codec object passes through."""
    if not isinstance(name, str):
        return name
    parts = name.split("|")
    if len(parts) > 1:
        return _Chain([get_codec(part) for part in parts])
    try:
        return _registry[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r} (known: {sorted(_registry)})") from None


class _Chain(Codec):
    def __init__(self, codecs: list[CodecLike]) -> None:
        super().__init__()
        self._codecs = codecs

    def dumps(self, obj: Any) -> bytes:
        for codec in self._codecs:
            obj = codec.dumps(obj)
        return bytes(obj)

    def loads(self, data: bytes) -> Any:
        obj: Any = data
        for codec in reversed(self._codecs):
            obj = codec.loads(obj)
        return obj


def dumps(name: str | CodecLike, obj: Any) -> bytes:
    """Encode ``obj`` with the codec called ``name``."""
    return get_codec(name).dumps(obj)


def loads(name: str | CodecLike, data: bytes) -> Any:
    """Decode ``data`` with the codec called ``name``."""
    return get_codec(name).loads(data)


def registered() -> Mapping[str, CodecLike]:
    """The codecs known by name (read-only view, for error messages and tests)."""
    return dict(_registry)
