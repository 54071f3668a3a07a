"""``app.Table`` and ``app.GlobalTable``: Faust's tables, sharded by partition.

A table is a mapping whose rows live in the partition of the record that wrote them:
``word_counts[word] += 1`` while processing a record of ``posts[3]`` reads and writes
shard 3. That is Faust's co-partitioning rule, and agentd checks it where Faust only
documents it: the key written must be the key of the record being processed (a
``group_by`` first makes it so), else :class:`KeyNotCopartitioned`. A row in the
right partition is what lets every instance write its own partitions' shards while
the next owner of a partition finds all of them after a move.

Keys and values are encoded with the table's changelog topic (``<app id>-<name>-
changelog``, Faust's name), so a row is stored, and recovered, exactly as it travels.
Where shards live and what a write does besides is the process's runtime
(:mod:`agentlib.tables.runtime`): memory in tests and scripts, RocksDB and the
changelog under agentd.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from json.encoder import encode_basestring_ascii
from typing import Any, ClassVar

from agentlib import codecs
from agentlib.apptype import AppT
from agentlib.events import _current as _current_event
from agentlib.events import current_event
from agentlib.records import decode_known
from agentlib.tables import runtime as runtimes
from agentlib.tables.windows import HoppingWindow, Seconds, TumblingWindow, WindowWrapper
from agentlib.topics import Topic

__all__ = ["STORES", "GlobalTable", "KeyNotCopartitioned", "Table", "changelog_name"]

#: The ``store=`` URLs agentd knows (Faust's spelling); None: the runtime's default.
STORES = ("rocksdb://", "memory://")

_MISSING = object()


class KeyNotCopartitioned(KeyError):
    """A table was written with a key that is not the key of the record processed."""

    def __str__(self) -> str:  # KeyError quotes its argument; this is a sentence
        return str(self.args[0])


def changelog_name(app_id: str, table: str) -> str:
    """The changelog topic of ``table`` (Faust's ``<app id>-<table>-changelog``)."""
    return f"{app_id}-{table}-changelog"


class Table(MutableMapping[Any, Any]):
    """A partitioned, changelog-backed mapping (``app.Table(name, default=int)``)."""

    is_global = False
    #: What ``_get_stored`` returns for an absent row (the windows compare with it).
    missing: ClassVar[object] = _MISSING

    def __init__(self, app: AppT, name: str, *, default: Callable[[], Any] | None = None,
                 key_type: Any = None, value_type: Any = None, partitions: int | None = None,
                 help: str | None = None, on_window_close: Callable[..., Any] | None = None,
                 store: str | None = None, key_serializer: Any = None,
                 value_serializer: Any = None, **kwargs: Any) -> None:
        if not name or not isinstance(name, str):
            raise TypeError("a table needs a name: app.Table('word_counts', default=int)")
        if store is not None and not str(store).startswith(STORES):
            raise ValueError(f"table {name!r}: store={store!r}; agentd knows "
                             f"{' and '.join(STORES)}")
        if partitions is not None and (not isinstance(partitions, int) or partitions < 1):
            raise ValueError(f"table {name!r}: partitions must be a positive int")
        self.app = app
        self.name = name
        self.default = default
        self.key_type = key_type
        self.value_type = value_type
        self.partitions = partitions
        self.help = help or ""
        self.on_window_close = on_window_close
        self.store = store
        self.options = dict(kwargs)
        self._key_serializer = key_serializer
        #: The last str/bytes key encoded and its encoding: ``t[k] += 1`` encodes ``k``
        #: for the read and again for the write.
        self._last_key: Any = _MISSING
        self._last_encoded = b""
        #: The event whose partition's shard was looked up last, its runtime and the
        #: shard: ``t[k] += 1`` reads, then writes, the same shard.
        self._shard_event: Any = None
        self._shard_runtime: Any = None
        self._shard: Any = None
        self.changelog_topic = Topic(
            app, changelog_name(app.id, name), key_type=key_type, value_type=value_type,
            key_serializer=key_serializer or "json", value_serializer=value_serializer,
            partitions=partitions, compacting=True, internal=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"

    @property
    def changelog_topic_name(self) -> str:
        """Where every write to this table is produced."""
        return self.changelog_topic.get_topic_name()

    # -- windows ------------------------------------------------------------------

    def tumbling(self, size: Seconds, expires: Seconds | None = None) -> WindowWrapper:
        """This table in fixed windows of ``size`` seconds (Faust's ``tumbling``)."""
        return WindowWrapper(self, TumblingWindow(size, expires))

    def hopping(self, size: Seconds, step: Seconds, expires: Seconds | None = None
                ) -> WindowWrapper:
        """This table in windows of ``size`` seconds every ``step`` (``hopping``)."""
        return WindowWrapper(self, HoppingWindow(size, step, expires))

    # -- the mapping --------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        value = self._get_stored(key)
        if value is _MISSING:
            return self.__missing__(key)
        return value

    def __missing__(self, key: Any) -> Any:
        if self.default is not None:
            return self.default()
        raise KeyError(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._set_stored(key, key, value)

    def __delitem__(self, key: Any) -> None:
        self._set_stored(key, key, None)

    def __contains__(self, key: object) -> bool:
        return self._get_stored(key) is not _MISSING

    def __iter__(self) -> Iterator[Any]:
        for _, key, _ in self._stored_items():
            yield key

    def __len__(self) -> int:
        return sum(len(shard) for shard in runtimes.current().local_shards(self))

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` (the table's ``default`` is not used)."""
        value = self._get_stored(key)
        return default if value is _MISSING else value

    def pop(self, key: Any, *default: Any) -> Any:
        value = self._get_stored(key)
        if value is _MISSING:
            if default:
                return default[0]
            raise KeyError(key)
        del self[key]
        return value

    # -- stored rows (the windows module works on these too) -----------------------

    def _get_stored(self, store_key: Any) -> Any:
        """The value stored under ``store_key``, or ``_MISSING``.

        The record's own partition is looked at first (its rows are there); outside an
        agent, or for a key of another partition this process holds, the other open
        shards are searched. The record's own key is not searched for elsewhere: the
        co-partitioning rule puts its row in the record's partition only (Faust looks
        nowhere else for any key while processing a record), and a new key would cost
        a RocksDB read in every other shard.
        """
        encoded = self._encode_key(store_key)
        event = _current_get()
        first = None
        if event is not None:
            first = self._shard_of(event)
            raw = first.get(encoded)
            if raw is not None:
                return self._decode_value(raw)
            own = event.key
            if store_key is own or (type(store_key) is type(own) and type(own) in _TEXT
                                    and store_key == own):
                return _MISSING
        for shard in runtimes.current().local_shards(self):
            if shard is first:
                continue
            raw = shard.get(encoded)
            if raw is not None:
                return self._decode_value(raw)
        return _MISSING

    def _shard_of(self, event: Any) -> Any:
        """The shard of ``event``'s partition in the current runtime, looked up once
        per event: ``t[k] += 1`` reads, then writes, the same shard. (A partition's
        shard cannot close while one of its events is being processed: the daemon
        releases a partition only once every record of it is acked.)"""
        runtime = runtimes.current()
        if event is self._shard_event and runtime is self._shard_runtime:
            return self._shard
        shard = runtime.shard(self, event.message.partition)
        self._shard_event, self._shard_runtime, self._shard = event, runtime, shard
        return shard

    def _set_stored(self, user_key: Any, store_key: Any, value: Any) -> None:
        """Write ``value`` (None: delete) under ``store_key`` in the processed record's
        partition, after checking that ``user_key`` is that record's key."""
        event = _current_get()
        if event is None:
            event = self._processed_event()  # raises
        if user_key is not event.key:  # (the record's own key object passes anyway)
            self._check_key(user_key, event)
        self._write_stored(event, store_key, value)

    def _expire_stored(self, store_key: Any) -> Any:
        """Remove ``store_key`` from the processed record's partition, with no key
        check; return its value, or ``missing`` (then nothing is written).

        For rows the record did not write but whose deletion it causes: a window that
        the record's timestamp closed (:mod:`agentlib.tables.windows`). Only that
        partition's shard is looked at, so the row removed is one of this partition
        and the co-partitioning rule holds; the delete is written, changelogged and
        marked as one of this record's writes.
        """
        event = self._processed_event()
        encoded = self._encode_key(store_key)
        runtime = runtimes.current()
        shard = runtime.shard(self, event.message.partition)
        raw = shard.get(encoded)
        if raw is None:
            return _MISSING
        runtime.write(self, shard, event, encoded, None)
        return self._decode_value(raw)

    def _processed_event(self) -> Any:
        event = current_event()
        if event is None:
            raise RuntimeError(f"table {self.name!r}: cannot modify a table outside of an "
                               f"agent's stream iteration (Faust's rule)")
        return event

    def _write_stored(self, event: Any, store_key: Any, value: Any) -> None:
        encoded = self._encode_key(store_key)
        runtime = runtimes.current()
        if event is self._shard_event and runtime is self._shard_runtime:
            shard = self._shard  # (the read of ``t[k] += 1`` looked it up)
        else:
            shard = self._shard_of(event)
        if value is not None:  # (the topic keeps its codec's dumps between calls)
            value = self.changelog_topic.encode_value(value)
        runtime.write(self, shard, event, encoded, value)

    def _stored_items(self, partition: int | None = None) -> Iterator[tuple[int, Any, Any]]:
        """``(partition, key, value)`` of every row in the shards this process holds
        (of ``partition``'s shard only, when given)."""
        decode_key = self._decode_key
        for shard in runtimes.current().local_shards(self):
            if partition is not None and shard.partition != partition:
                continue
            for key, raw in shard.items():
                yield shard.partition, decode_key(key), self._decode_value(raw)

    def _check_key(self, key: Any, event: Any) -> None:
        """Faust's co-partitioning rule, enforced: the row must belong to the record's
        partition, which holds when it is the record's key."""
        if self.is_global or key == event.key or _text(key) == _text(event.key):
            return
        record = event.message
        if record.key is not None and record.key in _encodings(key, self.changelog_topic):
            return
        raise KeyNotCopartitioned(
            f"table {self.name!r}: key {key!r} is not the key of the record being "
            f"processed ({record.topic}[{record.partition}]@{record.offset}, key "
            f"{event.key!r}); a row must live in its record's partition: group_by() the "
            f"stream by this key first (Faust's co-partitioning rule)")

    def _encode_key(self, key: Any) -> bytes:
        """A row's key as stored and changelogged. With no ``key_serializer`` given,
        JSON of the key with bytes read as UTF-8 text: ``t[event.key]`` (bytes from a
        raw-keyed topic) and ``t["word"]`` are one row, and keys come back as the str,
        int or list they were written as."""
        if key is self._last_key:
            return self._last_encoded
        kind = type(key)
        if self._key_serializer is None:
            # (a str or bytes key, the usual one, as json_dumps writes str: directly)
            encoded = _json_str(key.decode("utf-8", "surrogateescape")) if kind is bytes \
                else _json_str(key) if kind is str else codecs.json_dumps(_text(key))
        else:
            raw = self.changelog_topic.encode_key(key)
            assert raw is not None
            encoded = raw
        if kind is str or kind is bytes:  # immutable: the encoding stays right
            self._last_key, self._last_encoded = key, encoded
        return encoded

    def _decode_key(self, data: bytes) -> Any:
        if self._key_serializer is None:
            return codecs.loads("json", data)
        return self.changelog_topic.decode_key(data)

    def _decode_value(self, data: bytes) -> Any:
        topic = self.changelog_topic
        payload = topic.load_value(data)  # (the topic keeps its codec's loads)
        if self.value_type is None:
            # (a count, a sum, a name: nothing in it can be a Record)
            return payload if type(payload) in _SCALARS else decode_known(payload)
        return topic.decode_value(payload)


def _json_str(text: str) -> bytes:
    """``codecs.json_dumps(text)`` for a str, without its type checks."""
    return encode_basestring_ascii(text).encode()


#: Key types compared by value with the record's key (cheap, and never raising).
_TEXT = (str, bytes)

#: ``current_event()``, without the call.
_current_get = _current_event.get

#: Payload types that ``decode_known`` returns as they are.
_SCALARS = frozenset((int, float, str, bool, type(None)))


def _text(key: Any) -> Any:
    """``key`` with bytes read as UTF-8 text (inside tuples and lists too)."""
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key).decode("utf-8", "surrogateescape")
    if isinstance(key, tuple | list):
        return [_text(item) for item in key]
    return key


def _encodings(key: Any, changelog: Any) -> tuple[bytes | None, ...]:
    """The byte forms ``key`` may have as a record's key: raw text, as it is, JSON, or
    as the table encodes it (the source topic's serializer need not be the table's)."""
    if isinstance(key, str):
        return (key.encode(), changelog.encode_key(key))
    if isinstance(key, bytes):
        return (key,)
    return (codecs.json_dumps(key), changelog.encode_key(key))


class GlobalTable(Table):
    """A table every instance reads whole (``app.GlobalTable``): no co-partitioning
    rule for its keys."""

    is_global = True
