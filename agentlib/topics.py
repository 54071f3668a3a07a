"""Topics and channels: where messages go, and how their keys and values are coded.

A :class:`Topic` is a description (names, key/value types and serializers, partition
count); it owns the encode/decode of its messages so that the worker side (decode a
fed record) and the client side (``send``) agree by construction. Defaults follow
Faust: values ``json``, keys ``raw``.

Decoding a value: the codec turns bytes into a payload; if the topic has a Record
``value_type`` the payload becomes that Record (``__faust`` or not); without one, a
payload carrying a registered ``__faust.ns`` becomes its Record.

A :class:`Channel` is an unnamed, in-memory topic (``app.channel()``), never in Kafka:
in a plain process it feeds the agents of that process; under agentd the supervisor
carries its messages to the instances of the agents reading it (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentlib import codecs
from agentlib.apptype import AppT
from agentlib.records import Record, decode_known

if TYPE_CHECKING:
    from agentlib.kafka import RecordMetadata

__all__ = ["Channel", "CodecArg", "HeadersArg", "Schema", "Topic", "headers_list"]

HeadersArg = Mapping[str, bytes | str] | Sequence[tuple[str, bytes | str]] | None
#: A serializer: a codec's name (``"json"``, ``"raw"``...) or a codec object.
CodecArg = str | codecs.CodecLike | None


class Schema:
    """A topic's key and value types and serializers in one object (``faust.Schema``):
    ``app.topic("t", schema=faust.Schema(key_type=str, value_type=Order))``. Arguments
    given to ``app.topic`` itself win over the schema's."""

    def __init__(self, *, key_type: Any = None, value_type: Any = None,
                 key_serializer: str | codecs.CodecLike | None = None,
                 value_serializer: str | codecs.CodecLike | None = None,
                 allow_empty: bool | None = None) -> None:
        self.key_type = key_type
        self.value_type = value_type
        self.key_serializer = key_serializer
        self.value_serializer = value_serializer
        self.allow_empty = allow_empty

    def __repr__(self) -> str:
        return (f"<Schema: key={self.key_type!r}/{self.key_serializer!r} "
                f"value={self.value_type!r}/{self.value_serializer!r}>")


class Topic:
    """One or more Kafka topic names sharing a schema; the first is the main one."""

    def __init__(self, app: AppT, *topics: str, key_type: Any = None, value_type: Any = None,
                 key_serializer: str | codecs.CodecLike | None = None,
                 value_serializer: str | codecs.CodecLike | None = None,
                 partitions: int | None = None, replicas: int | None = None,
                 retention: float | None = None, compacting: bool | None = None,
                 internal: bool = False, config: Mapping[str, Any] | None = None,
                 has_prefix: bool = False, schema: Schema | None = None,
                 **kwargs: Any) -> None:
        if not topics:
            raise TypeError("app.topic() needs at least one topic name")
        if schema is not None:
            key_type = schema.key_type if key_type is None else key_type
            value_type = schema.value_type if value_type is None else value_type
            key_serializer = key_serializer or schema.key_serializer
            value_serializer = value_serializer or schema.value_serializer
        self.schema = schema
        self.app = app
        self.topics: tuple[str, ...] = tuple(topics)
        self.key_type = key_type
        self.value_type = value_type
        self.key_serializer = key_serializer
        self.value_serializer = value_serializer
        self.partitions = partitions
        self.replicas = replicas
        self.retention = retention
        self.compacting = compacting
        self.internal = internal
        self.config = dict(config or {})
        #: the name already starts with the app id and agent name (an agent's default
        #: topic, a derived topic): ``group_by`` adds no agent-name prefix (Faust's rule)
        self.has_prefix = has_prefix
        #: (value_serializer, value_type, the codec's dumps) as encode_value last found
        self._value_dumps: tuple[Any, Any, Callable[[Any], bytes]] | None = None
        #: the same for load_value: (value_serializer, value_type, the codec's loads)
        self._value_loads: tuple[Any, Any, Callable[[bytes], Any]] | None = None

    def get_topic_name(self) -> str:
        """The main topic (the first name), where ``send`` produces."""
        return self.topics[0]

    def __repr__(self) -> str:
        return f"<Topic: {', '.join(self.topics)}>"

    # -- coding -------------------------------------------------------------------

    def _key_codec(self) -> str | codecs.CodecLike:
        if self.key_serializer is not None:
            return self.key_serializer
        codec: str | codecs.CodecLike = self.app.conf.get("key_serializer", "raw")
        return codec

    def _value_codec(self) -> str | codecs.CodecLike:
        if self.value_serializer is not None:
            return self.value_serializer
        if self.value_type is bytes:
            return "raw"
        if isinstance(self.value_type, type) and issubclass(self.value_type, Record):
            return self.value_type._serializer
        codec: str | codecs.CodecLike = self.app.conf.get("value_serializer", "json")
        return codec

    def encode_key(self, key: Any) -> bytes | None:
        """Key bytes: Records as their JSON form, str/bytes raw, others as JSON."""
        if key is None:
            return None
        if isinstance(key, Record):
            return key.dumps(serializer=self.key_serializer
                             if isinstance(self.key_serializer, str) else None)
        codec = self._key_codec()
        if codec == "raw" and not isinstance(key, bytes | str | bytearray | memoryview):
            return codecs.json_dumps(key)
        return codecs.dumps(codec, key)

    def encode_value(self, value: Any) -> bytes | None:
        """Value bytes with the topic's serializer (None stays None: a tombstone).

        The codec's ``dumps`` is looked up once and kept while ``value_serializer`` and
        ``value_type`` stay as they were (every sink output and table write encodes a
        value; the lookup was a third of the cost of a small one)."""
        if value is None:
            return None
        if isinstance(value, Record):
            value = value.to_representation()
        memo = self._value_dumps
        if memo is None or memo[0] is not self.value_serializer \
                or memo[1] is not self.value_type:
            memo = self._value_dumps = (self.value_serializer, self.value_type,
                                        codecs.get_codec(self._value_codec()).dumps)
        return memo[2](value)

    def decode_key(self, data: bytes | None) -> Any:
        """The key as the agent sees it: ``key_type`` applied, else raw bytes."""
        if data is None:
            return None
        payload = codecs.loads(self._key_codec(), data)
        return _as_type(self.key_type, payload)

    def load_value(self, data: bytes | None) -> Any:
        """Bytes → codec payload (still JSON-shaped), before any Record is built.

        The codec's ``loads`` is kept as :meth:`encode_value` keeps its ``dumps`` (a
        table read decodes a value with it)."""
        if data is None:
            return None
        memo = self._value_loads
        if memo is None or memo[0] is not self.value_serializer \
                or memo[1] is not self.value_type:
            memo = self._value_loads = (self.value_serializer, self.value_type,
                                        codecs.get_codec(self._value_codec()).loads)
        return memo[2](data)

    def decode_value(self, payload: Any) -> Any:
        """A codec payload → the value the agent sees (``value_type`` applied)."""
        return _as_type(self.value_type, payload)

    # -- producing ----------------------------------------------------------------

    async def send(self, *, key: Any = None, value: Any = None, partition: int | None = None,
                   headers: HeadersArg = None, timestamp: float | None = None,
                   key_serializer: CodecArg = None, value_serializer: CodecArg = None,
                   callback: Callable[[asyncio.Future[RecordMetadata]], Any] | None = None
                   ) -> RecordMetadata:
        """Produce one message to the main topic; return on the delivery report.

        ``timestamp``: the message's time in seconds, as Faust's (default: now);
        ``key_serializer``/``value_serializer``: this message's codecs instead of the
        topic's; ``callback``: called with the delivered future (Faust's)."""
        future = self.send_soon(key=key, value=value, partition=partition, headers=headers,
                                timestamp=timestamp, key_serializer=key_serializer,
                                value_serializer=value_serializer)
        if callback is not None:
            future.add_done_callback(callback)
        return await future

    def send_soon(self, *, key: Any = None, value: Any = None, partition: int | None = None,
                  headers: HeadersArg = None, timestamp: float | None = None,
                  key_serializer: CodecArg = None, value_serializer: CodecArg = None
                  ) -> asyncio.Future[RecordMetadata]:
        """Queue one message; the future resolves on its delivery report.

        ``bytes`` are sent as they are, whatever the serializer (Faust's ``dumps_key``/
        ``dumps_value`` skip them: how ``Event.forward`` passes a message on)."""
        if not isinstance(key, bytes):
            key = (self.encode_key(key) if key_serializer is None
                   else _dumps_with(key_serializer, key))
        if not isinstance(value, bytes):
            value = (self.encode_value(value) if value_serializer is None
                     else _dumps_with(value_serializer, value))
        args = (self.get_topic_name(), key, value, partition, headers_list(headers))
        if timestamp is None:  # any producer: a test's, the worker's
            return self.app.producer.send_soon(*args)
        return self.app.producer.send_soon(*args, timestamp_ms=int(timestamp * 1000))

    def stream(self) -> Any:
        """Not available: agentd delivers topics to agents only (one consumer per host)."""
        raise NotImplementedError(
            "topic.stream() outside an agent is not supported by agentd: the supervisor "
            "owns the Kafka consumer. Declare an @app.agent on this topic instead.")

    def derive(self, *, prefix: str = "", suffix: str = "", **kwargs: Any) -> Topic:
        """A topic with the same schema and names wrapped in ``prefix``/``suffix``."""
        settings = {"key_type": self.key_type, "value_type": self.value_type,
                    "key_serializer": self.key_serializer,
                    "value_serializer": self.value_serializer,
                    "partitions": self.partitions,
                    "has_prefix": self.has_prefix or bool(prefix), **kwargs}
        return Topic(self.app, *(f"{prefix}{name}{suffix}" for name in self.topics),
                     **settings)


_channel_numbers = itertools.count()


class Channel(Topic):
    """An in-process channel: never subscribed in Kafka, no producer needed."""

    def __init__(self, app: AppT, *, key_type: Any = None, value_type: Any = None,
                 maxsize: int | None = None, **kwargs: Any) -> None:
        # Faust's channels carry objects, not bytes: cloudpickle unless told otherwise.
        kwargs.setdefault("key_serializer", "cloudpickle")
        kwargs.setdefault("value_serializer", "cloudpickle")
        super().__init__(app, f"channel-{next(_channel_numbers)}", key_type=key_type,
                         value_type=value_type, **kwargs)
        self.maxsize = maxsize

    def __repr__(self) -> str:
        return f"<Channel: {self.get_topic_name()}>"

    def send_soon(self, *, key: Any = None, value: Any = None, partition: int | None = None,
                  headers: HeadersArg = None, timestamp: float | None = None,
                  key_serializer: CodecArg = None, value_serializer: CodecArg = None
                  ) -> asyncio.Future[RecordMetadata]:
        """Feed the agents reading this channel (here, or through agentd's supervisor);
        ``timestamp`` and the serializers are Faust's arguments, unused: a channel
        message has no time and carries objects (pickled between processes)."""
        return self.app._deliver_locally(self, self.encode_key(key), self.encode_value(value),
                                         headers_list(headers))


def _dumps_with(serializer: str | codecs.CodecLike, obj: Any) -> bytes | None:
    """``obj`` encoded with a per-message serializer (a Record as its fields)."""
    if obj is None:
        return None
    if isinstance(obj, Record):
        obj = obj.to_representation()
    return codecs.dumps(serializer, obj)


def _as_type(wanted: Any, payload: Any) -> Any:
    if isinstance(wanted, type) and issubclass(wanted, Record):
        if isinstance(payload, wanted):
            return payload
        return wanted.from_data(payload)
    if wanted is None:
        return decode_known(payload)
    if wanted is str and isinstance(payload, bytes):
        return payload.decode()
    if wanted in (int, float) and isinstance(payload, bytes | str):
        return wanted(payload)
    return payload


def headers_list(headers: HeadersArg) -> list[tuple[str, bytes]] | None:
    """Headers as Kafka takes them: ``(name, bytes)`` pairs (str values UTF-8), or None."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value.encode() if isinstance(value, str) else value)
            for name, value in items]
