"""The ring record encodings round-trip every field, including the None cases."""

from __future__ import annotations

import struct

import pytest

from supervisor.transport import wire


@pytest.mark.parametrize("key,value,headers", [
    (b"k", b"v", None),
    (None, b"v", None),
    (b"k", None, None),
    (None, None, None),
    (b"", b"", [("a", b"1"), ("b\u00e9", b""), ("c", None)]),
])
def test_record_round_trips_every_field(key, value, headers):
    buf = wire.encode_record(3, 7, 123456789012, 1700000000000, key, value, headers)
    assert buf[0] == wire.RECORD
    got = wire.decode_record(memoryview(buf))
    expected_headers = tuple((n, v if v is not None else b"") for n, v in headers or ())
    assert got == wire.DecodedRecord(3, 7, 123456789012, 1700000000000, key, value,
                                     expected_headers)


@pytest.mark.parametrize("value_size", [0, 100, 4096 - 60, 4096, 5000, 100_000])
@pytest.mark.parametrize("key", [None, b"key-1"])
def test_headerless_records_of_any_size_decode_whole_or_fail_when_damaged(key, value_size):
    """Small headerless records are copied whole, larger ones field by field: both
    ways give the same fields and refuse a record whose lengths do not add up."""
    value = bytes(range(256)) * (value_size // 256) + b"v" * (value_size % 256)
    buf = wire.encode_record(1, 2, 3, 4, key, value, None)
    for form in (buf, memoryview(buf)):
        assert wire.record_fields(form) == (1, 2, 3, 4, key, value, ())
    for damaged in (buf[:-1], buf + b"x"):
        with pytest.raises((struct.error, ValueError)):  # struct.error: cut in the header
            wire.record_fields(memoryview(damaged))


def test_missing_timestamp_decodes_as_none():
    assert wire.decode_record(wire.encode_record(0, 0, 0, -1, b"k", b"v", None)).timestamp_ms \
        is None


def test_topic_table_ack_error_and_pong_round_trip():
    assert wire.decode_topics(wire.encode_topics(["a", "b.c"])) == ["a", "b.c"]
    assert wire.decode_topics(wire.encode_topics([])) == []
    assert wire.decode_ack(wire.encode_ack(1, 2, 10, 20)) == wire.Ack(1, 2, 10, 20)
    err = wire.decode_error(wire.encode_error(1, 2, 3, wire.OUTCOME_CRASH, "boom é"))
    assert err == wire.ErrorReport(1, 2, 3, wire.OUTCOME_CRASH, "boom é")
    assert wire.decode_pong(wire.encode_pong(5, 6)) == wire.Pong(5, 6)


def test_tables_report_round_trips_every_row_and_refuses_a_damaged_one():
    rows = [wire.TableRow("word_counts", 3, "active", 1234, True, 56789, 999, 0, 1000),
            wire.TableRow("t\u00e9", 0, "recovering", 0, False, 0, -1, 50_000, 7)]
    buf = wire.encode_tables(rows)
    assert buf[0] == wire.TABLES
    assert wire.decode_tables(memoryview(buf)) == rows
    assert wire.decode_tables(wire.encode_tables([])) == []
    for damaged in (buf[:-1], buf + b"x", buf[:-len("t\u00e9".encode()) - 3]):
        with pytest.raises((struct.error, ValueError)):
            wire.decode_tables(damaged)
    bad_state = bytearray(buf)
    bad_state[3 + 4] = len(wire.TABLE_STATES)  # the first row's state byte
    with pytest.raises(ValueError):
        wire.decode_tables(bytes(bad_state))


def test_group_and_txn_records_round_trip():
    metadata = b"CGMDv2:\x00\x00\x00\x07member-1\x00\x00\x00\x03"
    record = wire.encode_group(metadata)
    assert record[0] == wire.GROUP and wire.decode_group(memoryview(record)) == metadata
    report = wire.TxnReport(commits=12, held_records=345, open_age_s=0.25)
    encoded = wire.encode_txn(report)
    assert encoded[0] == wire.TXN and wire.decode_txn(encoded) == report
