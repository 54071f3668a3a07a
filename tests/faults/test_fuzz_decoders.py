"""Hypothesis fuzzing of two decoders that meet input agentd does not control.

- ``supervisor.transport.wire.decode_record``: the worker's first step for every message. Any
  field a Kafka message can carry must round-trip, and a damaged ring record must fail
  with ``struct.error`` or ``ValueError`` (what a caller can catch and report), never
  with an ``IndexError``, ``TypeError`` or the like, and never pass damaged data on
  as if it were whole.
- The config loader: ``tests/test_config.py`` already fuzzes the top level (any
  structure, any text). What it cannot reach by chance is a well-formed
  ``[agents."name"]`` table with every agent key holding a hostile value (sizes and
  durations as odd strings, huge or non-finite numbers, wrong types), then the steps
  the daemon runs after loading (``validate_agent_names``, ``config.agent``,
  ``dead_letter_topic_for``). Only ``ConfigError`` may come out.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.config.loader import ConfigError, from_mapping, validate_agent_names
from supervisor.transport import wire

DECODE_ERRORS = (struct.error, ValueError)

_names = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_blobs = st.none() | st.binary(max_size=300)
_headers = st.none() | st.lists(st.tuples(_names, _blobs), max_size=5)


@settings(max_examples=400, deadline=None)
@given(topic=st.integers(0, 2**16 - 1), partition=st.integers(0, 2**31 - 1),
       offset=st.integers(0, 2**63 - 1), timestamp=st.integers(-1, 2**63 - 1),
       key=_blobs, value=_blobs, headers=_headers)
def test_every_kafka_message_round_trips_through_the_ring_encoding(
        topic: int, partition: int, offset: int, timestamp: int, key: bytes | None,
        value: bytes | None, headers: list[tuple[str, bytes | None]] | None) -> None:
    buf = wire.encode_record(topic, partition, offset, timestamp, key, value, headers)
    got = wire.decode_record(memoryview(buf))
    assert got == wire.DecodedRecord(
        topic, partition, offset, None if timestamp < 0 else timestamp, key, value,
        tuple((n, v if v is not None else b"") for n, v in headers or ()))


@st.composite
def damaged_records(draw: st.DrawFn) -> bytes:
    """A valid record cut short, extended, or with bytes flipped."""
    buf = bytearray(wire.encode_record(
        draw(st.integers(0, 3)), draw(st.integers(0, 7)), draw(st.integers(0, 10**6)),
        draw(st.integers(-1, 10**12)), draw(_blobs), draw(_blobs), draw(_headers)))
    how = draw(st.sampled_from(["cut", "extend", "flip"]))
    if how == "cut":
        return bytes(buf[:draw(st.integers(0, max(0, len(buf) - 1)))])
    if how == "extend":
        return bytes(buf) + draw(st.binary(min_size=1, max_size=20))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(1, len(buf) - 1))  # keep the kind byte
        buf[at] = draw(st.integers(0, 255))
    return bytes(buf)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_records() | st.binary(max_size=200).map(lambda b: bytes([wire.RECORD]) + b))
def test_a_damaged_ring_record_fails_with_a_decode_error_or_decodes_whole(buf: bytes) -> None:
    try:
        got = wire.decode_record(memoryview(buf))
    except DECODE_ERRORS:
        return
    # Accepted: then every byte must have been accounted for, nothing cut off and
    # nothing left over. (Re-encoding may differ where the format has two spellings
    # of one thing: a None header value decodes as b"", any negative length as None.)
    again = wire.encode_record(got.topic_index, got.partition, got.offset,
                               -1 if got.timestamp_ms is None else got.timestamp_ms,
                               got.key, got.value, list(got.headers))
    assert len(again) == len(buf), f"decoded {len(buf)} damaged bytes as if whole: {got!r}"


_hostile = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.integers(-(10**30), 10**30),
    st.sampled_from(["", "0", "-1", "1.5", "nan", "inf", "-inf", "1e400", "64KiB", "1GiB",
                     "2TiB", "0.5B", "1.5MiB", "512kib", "500ms", "-3s", "1h", "99999h",
                     "2 m", "1s1", "MiB", "\x00", "partition", "dead_letter", "key", "x" * 300,
                     "a..b", "topic.dlq", "1e3s"]),
    st.text(max_size=12), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
_agent_keys = st.sampled_from([
    "instances", "ordering", "on_error", "dead_letter_topic", "max_retries", "retry_backoff",
    "poison_after", "ring_size", "max_rss", "max_age", "heartbeat_timeout", "bogus"])


@settings(max_examples=500, deadline=None)
@given(tables=st.dictionaries(st.sampled_from(["adding", "m.adding", "other", "m.x.y", ""]),
                              st.dictionaries(_agent_keys, _hostile, max_size=5),
                              max_size=3),
       top=st.dictionaries(st.sampled_from(["commit_interval", "shutdown_timeout",
                                            "broker", "group_id", "log_level"]),
                           _hostile, max_size=2))
def test_agent_tables_with_hostile_values_raise_only_config_error(
        tables: dict[str, dict[str, Any]], top: dict[str, Any]) -> None:
    try:
        config = from_mapping({"app": "m", **top, "agents": tables})
        config = validate_agent_names(config, ["m.adding", "m.other", "m.x.y"])
        for name in ("m.adding", "m.other", "m.x.y"):
            agent = config.agent(name)
            agent.dead_letter_topic_for("source")
    except ConfigError as exc:
        assert exc.key and exc.reason and "\n" not in str(exc)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("key", ["retry_backoff", "max_age", "heartbeat_timeout"])
def test_non_finite_durations_are_a_config_error(key: str, value: float) -> None:
    with pytest.raises(ConfigError):
        from_mapping({"app": "m", "agents": {"adding": {key: value}}})
