"""The compiled per-message loop and the pure-Python one take the same messages and
write the same bytes (issue 21): checked against each other and against the wire
decoder, for keys and values that are None, empty or long, timestamps or none,
headers, partition changes, consumer errors and unreadable headers."""

from __future__ import annotations

import copy

import hypothesis.strategies as st
import pytest
from datapath_fakes import FakeMessage
from hypothesis import given, settings
from loop_paths import LOOPS

from supervisor.transport import runscan, wire


class Message(FakeMessage):
    """A FakeMessage with a timestamp and, optionally, a consumer error."""

    def __init__(self, *args, ts=(0, -1), err=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._ts, self._err = ts, err

    def error(self): return self._err
    def timestamp(self): return self._ts


blobs = st.one_of(st.none(), st.binary(max_size=40), st.binary(min_size=300, max_size=600))
headers = st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=5), st.one_of(
    st.none(), st.binary(max_size=8))), max_size=3))
messages = st.lists(st.builds(
    lambda part, off, key, value, ts, hdrs, kind: Message(
        "t" if part < 3 else "u", part % 3, off, key=key, value=value, ts=ts,
        headers=SystemError("bad name") if kind == 1 else hdrs,
        err="broker error" if kind == 2 else None),
    st.integers(0, 5), st.integers(0, 2**62), blobs, blobs,
    st.sampled_from([(0, -1), (1, 1_700_000_000_000), (2, 0)]), headers,
    st.sampled_from([0] * 8 + [1, 2])), max_size=12)


def _scan(loop, batch, start):
    batch = copy.deepcopy(batch)  # a failed headers() changes the message (as in C)
    first = batch[start]
    out: tuple[list, list, list] = ([], [], [])
    stop = loop(batch, start, first.topic(), first.partition(), 7, *out)
    return stop, out


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_both_loops_take_the_same_run_and_write_the_same_records(batch, data):
    if not batch:
        return
    start = data.draw(st.integers(0, len(batch) - 1))
    expected = _scan(runscan.scan_run_py, batch, start)
    for loop in (param.values[0] for param in LOOPS if param.values[0] is not None):
        assert _scan(loop, batch, start) == expected
    stop, (offsets, keys, records) = expected
    stop = -stop - 1 if stop < 0 else stop
    assert stop == start + len(records)
    for msg, offset, key, record in zip(batch[start:stop], offsets, keys, records,
                                        strict=True):
        decoded = wire.decode_record(record)
        ts_type, ts = msg.timestamp()
        assert (decoded.topic_index, decoded.partition, decoded.offset) == \
            (7, msg.partition(), msg.offset()) == (7, msg.partition(), offset)
        assert decoded.timestamp_ms == (ts if ts_type and ts >= 0 else None)
        assert decoded.key == msg.key() == key and decoded.value == msg.value()
        # (the decoder gives a None header value as b"": wire.py's own behaviour)
        assert decoded.headers == tuple((n, v or b"") for n, v in msg.headers() or ())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_run_stops_at_another_partition_an_error_or_unreadable_headers(loop):
    batch = [Message("t", 0, 1), Message("t", 0, 2), Message("t", 1, 3),
             Message("t", 1, 4, err="x"), Message("t", 1, 5, headers=SystemError("n")),
             Message("t", 1, 6)]
    offsets: list[int] = []
    assert loop(batch, 0, "t", 0, 0, offsets, [], []) == 2
    assert loop(batch, 2, "t", 1, 0, offsets, [], []) == 3
    assert loop(batch, 3, "t", 1, 0, offsets, [], []) == 3  # an error: not taken
    assert loop(batch, 4, "t", 1, 0, offsets, [], []) == -4 - 1  # unreadable headers
    assert loop(batch, 5, "t", 1, 0, offsets, [], []) == 6
    assert offsets == [1, 2, 3, 6]


def test_the_loop_is_chosen_at_import_and_pure_python_can_be_forced(monkeypatch):
    monkeypatch.setenv("AGENTD_PURE_PYTHON", "1")
    pure = (runscan.scan_run_py, runscan.copy_records_py, runscan.record_sizes_py)
    assert runscan._choose() == (pure, False)
    monkeypatch.delenv("AGENTD_PURE_PYTHON")
    chosen, compiled = runscan._choose()
    assert all(compiled == (mine is not theirs) for mine, theirs in zip(chosen, pure,
                                                                          strict=True))


@pytest.mark.parametrize("loop", LOOPS)
def test_a_run_ends_where_offsets_fall_back_and_keys_are_optional(loop):
    batch = [Message("t", 0, 5), Message("t", 0, 6), Message("t", 0, 6), Message("t", 0, 2),
             Message("t", 0, 3)]
    offsets: list[int] = []
    records: list[bytes] = []
    assert loop(batch, 0, "t", 0, 0, offsets, None, records) == 2
    assert loop(batch, 2, "t", 0, 0, offsets, None, records) == 3
    assert loop(batch, 3, "t", 0, 0, offsets, None, records) == 5
    assert offsets == [5, 6, 6, 2, 3] and len(records) == 5


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=20))
def test_both_size_loops_give_the_total_and_the_longest(records):
    expected = (sum(map(len, records)), max(map(len, records), default=0))
    assert runscan.record_sizes_py(records) == expected
    if runscan.COMPILED:
        from supervisor.transport._runscan import record_sizes
        assert record_sizes(records) == expected
