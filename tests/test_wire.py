"""The ring record encodings round-trip every field, including the None cases."""

from __future__ import annotations

import pytest

from supervisor import wire


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
