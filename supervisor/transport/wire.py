"""The bytes the rings carry: Kafka records one way, acks and reports the other way.

Why a hand-made binary format: the supervisor forwards every message without looking
inside it, so its per-message cost must be one ``struct`` pack and one concatenation
(no pickle, no dict, no object per header). Every record starts with a one-byte
``kind`` so either side can dispatch with ``buf[0]``.

Inbound (supervisor → worker):

- ``RECORD``: fixed header (:data:`RECORD_HEADER`: kind, topic index, partition,
  offset, timestamp ms or -1, key length or -1, value length or -1, header count),
  then the key, the value, then each header as ``u16 name length, name, i32 value
  length or -1, value``.
- ``TOPICS``: the topic table (index → name) as UTF-8 names joined by ``\\n``; sent
  once before the first record that uses a new index, so records carry a u16.
- ``CHANNEL`` (both ways, the same bytes; the supervisor reads only the name): a
  ``channel.send()``: u16 name length, the channel's name, the message as a ``RECORD``.
- ``LEADER`` (u8 1/0): this daemon leads its group (no longer): the instance running
  the app's tasks starts (cancels) the ``on_leader`` ones.
- ``STOP`` (finish what was fed, ack it, send ``RETIRED``, exit) and ``PING``.

Outbound (worker → supervisor):

- ``ACK`` (:data:`ACK_RECORD`): topic index, partition, first, last: every record of
  that partition *this instance was fed* with ``first <= offset <= last`` is done.
  Offsets an instance never received (other instances' in ``key`` mode) may lie in the
  range; the supervisor only retires records it gave to this instance.
- ``ERROR``: an error policy outcome the supervisor must know about (``CRASH``: the
  ``crash`` policy fired; the daemon stops non-zero) with a one-line message.
- ``PONG``: processed and in-flight counts (heartbeat/statistics).
- ``RETIRED``: the worker drained after ``STOP`` and is exiting.
- ``TABLES``: the instance's table shards (:class:`TableRow` each: state, keys,
  bytes on disk, changelog offset and lag, rows recovered). Sent with each ``PONG``
  by an instance whose agent uses tables, and about once a second while it replays a
  changelog (its loop cannot answer ``PING`` then): never per message. A u16 row
  count, then per row :data:`_TABLE_ROW` and the table's name in UTF-8.
"""

from __future__ import annotations

import struct
import traceback
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = [
    "ACK",
    "ACK_RECORD",
    "CHANNEL",
    "ERROR",
    "GROUP",
    "LEADER",
    "OUTCOME_AGENT_STOPPED",
    "OUTCOME_CRASH",
    "OUTCOME_HANDLED",
    "PING",
    "PING_RECORD",
    "PONG",
    "RECORD",
    "RECORD_HEADER",
    "RETIRED",
    "RETIRED_RECORD",
    "STOP",
    "STOP_RECORD",
    "TABLES",
    "TABLE_STATES",
    "TOPICS",
    "TXN",
    "Ack",
    "DecodedRecord",
    "ErrorReport",
    "Pong",
    "TableRow",
    "TxnReport",
    "channel_name",
    "decode_ack",
    "decode_channel",
    "decode_error",
    "decode_group",
    "decode_pong",
    "decode_record",
    "decode_release",
    "decode_tables",
    "decode_topics",
    "decode_txn",
    "encode_ack",
    "encode_channel",
    "encode_error",
    "encode_group",
    "encode_leader",
    "encode_pong",
    "encode_record",
    "encode_release",
    "encode_tables",
    "encode_topics",
    "encode_txn",
    "error_headers",
    "record_fields",
]

# Kinds (first byte of every ring record).
RECORD = 1
TOPICS = 2
STOP = 3
PING = 4
#: A partition left this instance (moved to another): close what it keeps of it (its
#: table shards), which the new owner is waiting to open.
RELEASE = 5
#: Under exactly once: the supervisor's consumer group metadata (member, generation),
#: which the instance's transactions commit offsets with (KIP-447 fencing); sent again
#: after every rebalance.
GROUP = 6
LEADER = 7  # inbound: this daemon leads its group (or no longer), see above
ACK = 16
ERROR = 17
PONG = 18
RETIRED = 19
TABLES = 20
#: Under exactly once, with each PONG: the instance's transactions (``TxnReport``).
TXN = 21
#: a channel message, both ways (see the module docstring)
CHANNEL = 22

#: A table shard's state in a ``TABLES`` row, by its code (the index).
TABLE_STATES = ("active", "recovering")

OUTCOME_CRASH = 1
OUTCOME_HANDLED = 2  # logged or dead-lettered, then acked: counted for status/metrics
#: The agent function ended on its own (it raised before reading, or returned without
#: reading); the instance exits and no record it held is to blame for that.
OUTCOME_AGENT_STOPPED = 3

#: kind u8, topic index u16, partition i32, offset i64, timestamp i64 (-1: none),
#: key length i32 (-1: None), value length i32 (-1: None), header count u16.
RECORD_HEADER = struct.Struct("<BHiqqiiH")
#: kind u8, topic index u16, partition i32, first offset i64, last offset i64.
ACK_RECORD = struct.Struct("<BHiqq")
_ERROR_HEAD = struct.Struct("<BHiqB")
_PONG = struct.Struct("<Bqq")
_RELEASE = struct.Struct("<Bi")
_TABLES_HEAD = struct.Struct("<BH")
#: partition i32, state u8, keys estimated u8, keys i64, disk bytes i64, changelog
#: offset i64, changelog lag i64, recovered rows i64, table name length u16.
_TABLE_ROW = struct.Struct("<iBBqqqqqH")
_HEADER_NAME = struct.Struct("<H")
_HEADER_VALUE = struct.Struct("<i")

STOP_RECORD = bytes([STOP])
PING_RECORD = bytes([PING])
RETIRED_RECORD = bytes([RETIRED])

_pack_record = RECORD_HEADER.pack
_unpack_record = RECORD_HEADER.unpack_from
_RECORD_SIZE = RECORD_HEADER.size
#: Headerless records up to this size are copied out of the ring whole, then sliced;
#: larger ones field by field (a large value is not copied twice).
_COPY_WHOLE = 4096


class DecodedRecord(NamedTuple):
    """A ``RECORD`` as the worker reads it (the topic still an index)."""

    topic_index: int
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class Ack(NamedTuple):
    topic_index: int
    partition: int
    first: int
    last: int


class ErrorReport(NamedTuple):
    topic_index: int
    partition: int
    offset: int
    outcome: int
    message: str


class Pong(NamedTuple):
    processed: int
    in_flight: int


class TxnReport(NamedTuple):
    """An instance's transactions: commits so far, and the open one's held records
    and age in seconds."""

    commits: int
    held_records: int
    open_age_s: float


class TableRow(NamedTuple):
    """One table shard an instance holds (see ``TABLES``)."""

    table: str
    partition: int
    state: str            # one of TABLE_STATES
    keys: int
    keys_estimated: bool
    disk_bytes: int
    changelog_offset: int
    changelog_lag: int
    recovered_rows: int


def encode_record(topic_index: int, partition: int, offset: int, timestamp_ms: int,
                  key: bytes | None, value: bytes | None,
                  headers: Sequence[tuple[str, bytes | None]] | None) -> bytes:
    """One Kafka message as a ``RECORD`` (hot path: one pack, one concatenation)."""
    if not headers:
        head = _pack_record(RECORD, topic_index, partition, offset, timestamp_ms,
                            -1 if key is None else len(key),
                            -1 if value is None else len(value), 0)
        if key is None:
            return head if value is None else head + value
        return head + key if value is None else head + key + value
    parts = [_pack_record(RECORD, topic_index, partition, offset, timestamp_ms,
                          -1 if key is None else len(key),
                          -1 if value is None else len(value), len(headers)),
             key or b"", value or b""]
    for name, header_value in headers:
        raw_name = name.encode()
        parts.append(_HEADER_NAME.pack(len(raw_name)))
        parts.append(raw_name)
        if header_value is None:
            parts.append(_HEADER_VALUE.pack(-1))
        else:
            parts.append(_HEADER_VALUE.pack(len(header_value)))
            parts.append(header_value)
    return b"".join(parts)


def decode_record(buf: bytes | memoryview) -> DecodedRecord:
    """A ``RECORD``'s fields; key, value and header values are copied out of ``buf``
    (it may be a view into the ring that is released right after).

    A damaged record raises ``struct.error`` or ``ValueError`` (lengths that do not
    add up to ``len(buf)``, a header name that is not UTF-8), never decodes short.
    """
    return DecodedRecord._make(record_fields(buf))


def record_fields(buf: bytes | memoryview) -> tuple[int, int, int, int | None, bytes | None,
                                                     bytes | None, tuple[tuple[str, bytes], ...]]:
    """:func:`decode_record` as a plain tuple (the worker's hot path: no NamedTuple)."""
    (_, topic_index, partition, offset, timestamp_ms, key_len, value_len,
     header_count) = _unpack_record(buf)
    size = len(buf)
    if not header_count and size <= _COPY_WHOLE:
        # The common record: one copy of it all, key and value sliced from that copy
        # (cheaper than a memoryview slice and a bytes() per field).
        data = bytes(buf)
        pos = _RECORD_SIZE
        key_bytes: bytes | None = None
        if key_len >= 0:
            key_bytes = data[pos:pos + key_len]
            pos += key_len
        value_bytes: bytes | None = None
        if value_len >= 0:
            value_bytes = data[pos:pos + value_len]
            pos += value_len
        if pos != size:
            raise ValueError(f"damaged RECORD: {size} bytes, its lengths say {pos}")
        return (topic_index, partition, offset, None if timestamp_ms < 0 else timestamp_ms,
                key_bytes, value_bytes, ())
    pos = _RECORD_SIZE
    key: bytes | None = None
    if key_len >= 0:
        key = bytes(buf[pos:pos + key_len])
        pos += key_len
    value: bytes | None = None
    if value_len >= 0:
        value = bytes(buf[pos:pos + value_len])
        pos += value_len
    headers: tuple[tuple[str, bytes], ...] = ()
    if header_count:
        items = []
        for _ in range(header_count):
            (name_len,) = _HEADER_NAME.unpack_from(buf, pos)
            pos += 2
            name = bytes(buf[pos:pos + name_len]).decode()
            pos += name_len
            (vlen,) = _HEADER_VALUE.unpack_from(buf, pos)
            pos += 4
            header_value = b""
            if vlen >= 0:
                header_value = bytes(buf[pos:pos + vlen])
                pos += vlen
            items.append((name, header_value))
        headers = tuple(items)
    if pos != len(buf):
        # The ring delimits every record, so the lengths inside must add up to it:
        # anything else is a damaged record, never a shorter or longer value.
        raise ValueError(f"damaged RECORD: {len(buf)} bytes, its lengths say {pos}")
    return (topic_index, partition, offset, None if timestamp_ms < 0 else timestamp_ms, key,
            value, headers)


def encode_topics(names: Sequence[str]) -> bytes:
    """The whole topic table; index i is ``names[i]``."""
    return bytes([TOPICS]) + "\n".join(names).encode()


def decode_topics(buf: bytes | memoryview) -> list[str]:
    text = bytes(buf[1:]).decode()
    return text.split("\n") if text else []


def encode_release(partition: int) -> bytes:
    return _RELEASE.pack(RELEASE, partition)


def decode_release(buf: bytes | memoryview) -> int:
    """The partition a ``RELEASE`` names."""
    partition: int = _RELEASE.unpack_from(buf)[1]
    return partition


def encode_group(metadata: bytes) -> bytes:
    return bytes((GROUP,)) + metadata


def decode_group(buf: bytes | memoryview) -> bytes:
    """The group metadata a ``GROUP`` carries (``consumer_group_metadata()``'s bytes)."""
    return bytes(buf[1:])


def encode_ack(topic_index: int, partition: int, first: int, last: int) -> bytes:
    return ACK_RECORD.pack(ACK, topic_index, partition, first, last)


def decode_ack(buf: bytes | memoryview) -> Ack:
    _, topic_index, partition, first, last = ACK_RECORD.unpack_from(buf)
    return Ack(topic_index, partition, first, last)


def encode_error(topic_index: int, partition: int, offset: int, outcome: int,
                 message: str) -> bytes:
    return _ERROR_HEAD.pack(ERROR, topic_index, partition, offset, outcome) + \
        message.encode(errors="replace")[:4000]


def decode_error(buf: bytes | memoryview) -> ErrorReport:
    _, topic_index, partition, offset, outcome = _ERROR_HEAD.unpack_from(buf)
    message = bytes(buf[_ERROR_HEAD.size:]).decode(errors="replace")
    return ErrorReport(topic_index, partition, offset, outcome, message)


_TXN = struct.Struct("<Bqqd")


def encode_txn(report: TxnReport) -> bytes:
    return _TXN.pack(TXN, *report)


def decode_txn(buf: bytes | memoryview) -> TxnReport:
    _, commits, held, age = _TXN.unpack_from(buf)
    return TxnReport(commits, held, age)


def encode_pong(processed: int, in_flight: int) -> bytes:
    return _PONG.pack(PONG, processed, in_flight)


def decode_pong(buf: bytes | memoryview) -> Pong:
    _, processed, in_flight = _PONG.unpack_from(buf)
    return Pong(processed, in_flight)


def encode_tables(rows: Sequence[TableRow]) -> bytes:
    parts = [_TABLES_HEAD.pack(TABLES, len(rows))]
    for row in rows:
        name = row.table.encode()
        parts.append(_TABLE_ROW.pack(row.partition, TABLE_STATES.index(row.state),
                                     row.keys_estimated, row.keys, row.disk_bytes,
                                     row.changelog_offset, row.changelog_lag,
                                     row.recovered_rows, len(name)))
        parts.append(name)
    return b"".join(parts)


def decode_tables(buf: bytes | memoryview) -> list[TableRow]:
    """The rows of a ``TABLES`` record; a damaged one raises ``struct.error`` or
    ``ValueError`` (an unknown state, a name that is not UTF-8)."""
    _, count = _TABLES_HEAD.unpack_from(buf)
    pos = _TABLES_HEAD.size
    rows = []
    for _ in range(count):
        (partition, state, estimated, keys, disk_bytes, offset, lag, recovered,
         name_len) = _TABLE_ROW.unpack_from(buf, pos)
        pos += _TABLE_ROW.size
        name = bytes(buf[pos:pos + name_len]).decode()
        pos += name_len
        if state >= len(TABLE_STATES):
            raise ValueError(f"damaged TABLES record: state {state}")
        rows.append(TableRow(name, partition, TABLE_STATES[state], keys, bool(estimated),
                             disk_bytes, offset, lag, recovered))
    if pos != len(buf):
        raise ValueError(f"damaged TABLES record: {len(buf)} bytes, its lengths say {pos}")
    return rows


def error_headers(agent: str, record: Any, exc: BaseException | str) -> list[tuple[str, bytes]]:
    """The ``agentd-*`` headers a dead-lettered record carries, whoever dead-letters it: a
    worker (an exception) or the daemon (a record too large for a ring, or poison)."""
    reason = exc if isinstance(exc, str) else "".join(
        traceback.format_exception_only(type(exc), exc)).strip()
    return [("agentd-error", reason.encode(errors="replace")[:4000]),
            ("agentd-agent", agent.encode()),
            ("agentd-original-topic", record.topic.encode()),
            ("agentd-original-partition", str(record.partition).encode()),
            ("agentd-original-offset", str(record.offset).encode())]


_CHANNEL_HEAD = struct.Struct("<BH")


def encode_channel(name: str, key: bytes | None, value: bytes | None,
                   headers: Sequence[tuple[str, bytes | None]] | None) -> bytes:
    """A ``CHANNEL`` record: the channel's name, then the message as a ``RECORD``."""
    raw_name = name.encode()
    return (_CHANNEL_HEAD.pack(CHANNEL, len(raw_name)) + raw_name
            + encode_record(0, 0, 0, -1, key, value, headers))


def channel_name(buf: bytes | memoryview) -> str:
    """The channel a ``CHANNEL`` record is for (all the supervisor reads of it)."""
    size = _CHANNEL_HEAD.unpack_from(buf)[1]
    return bytes(buf[_CHANNEL_HEAD.size:_CHANNEL_HEAD.size + size]).decode()


def decode_channel(buf: bytes | memoryview) -> tuple[str, DecodedRecord]:
    """A ``CHANNEL`` record's channel name and message."""
    start = _CHANNEL_HEAD.size + _CHANNEL_HEAD.unpack_from(buf)[1]
    return channel_name(buf), decode_record(memoryview(buf)[start:])


def encode_leader(leading: bool) -> bytes:
    """A ``LEADER`` record."""
    return bytes([LEADER, 1 if leading else 0])
