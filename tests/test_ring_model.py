"""The ring against a plain Python model, under random interleavings of writes and reads,
on both record-copy loops (pure Python, and compiled where it was built).

The model keeps the ring's bytes as an explicit list of entries (records and wrap
padding) with a write offset, and predicts exactly how many records a batch accepts:
so exact fits, wraps and full rings are checked, not only the order of records.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from loop_paths import COMPILED_COPY

from supervisor.transport import runscan
from supervisor.transport.ring import RecordTooLarge, Ring

CAPACITY = 512
MAX_RECORD = CAPACITY - 8


def footprint(length: int) -> int:
    """Bytes a record occupies: an 8-byte header, the payload rounded up to 8."""
    return 8 + -(-length // 8) * 8


@dataclass
class RingModel:
    """What the ring should hold: entries in order, bytes in use, where the next write goes."""

    capacity: int
    write_offset: int = 0
    used: int = 0
    entries: deque[tuple[str, bytes, int]] = field(default_factory=deque)
    read_out: list[tuple[str, bytes, int]] = field(default_factory=list)

    def write_many(self, records: list[bytes]) -> int | None:
        """How many records are accepted; None for RecordTooLarge."""
        for count, record in enumerate(records):
            size = footprint(len(record))
            if size > self.capacity:
                return count if count else None
            room_to_end = self.capacity - self.write_offset
            if size > room_to_end:
                if self.used + room_to_end > self.capacity:
                    return count
                self.entries.append(("pad", b"", room_to_end))
                self.used += room_to_end
                self.write_offset = 0
            if self.used + size > self.capacity:
                return count
            self.entries.append(("record", record, size))
            self.used += size
            self.write_offset = (self.write_offset + size) % self.capacity
        return len(records)

    def read_many(self, max_records: int) -> list[bytes]:
        """Records the reader gets; padding is consumed on the way, as the ring does."""
        records: list[bytes] = []
        while self.entries and len(records) < max_records:
            entry = self.entries.popleft()
            self.read_out.append(entry)
            if entry[0] == "record":
                records.append(entry[1])
        if not records:
            self.release()                 # padding alone is freed without a release()
        return records

    def release(self) -> None:
        self.used -= sum(size for _kind, _data, size in self.read_out)
        self.read_out.clear()


record_lengths = st.one_of(
    st.integers(0, 40),
    st.integers(0, MAX_RECORD),
    st.sampled_from([0, 1, 7, 8, 9, MAX_RECORD, MAX_RECORD - 7, MAX_RECORD + 1,
                     CAPACITY // 2 - 8, CAPACITY // 2 - 7, CAPACITY // 2]),
)


class RingMachine(RuleBasedStateMachine):
    copy_loop = staticmethod(runscan.copy_records_py)

    def __init__(self) -> None:
        super().__init__()
        self.chosen = runscan.copy_records
        runscan.copy_records = self.copy_loop
        self.ring = Ring.create(CAPACITY)
        self.model = RingModel(CAPACITY)
        self.serial = 0
        self.holding_views = False

    def teardown(self) -> None:
        self.ring.close()
        runscan.copy_records = self.chosen

    def make(self, length: int) -> bytes:
        self.serial += 1
        return (self.serial.to_bytes(4, "little") * (length // 4 + 1))[:length]

    @rule(lengths=st.lists(record_lengths, max_size=12))
    def write_many(self, lengths: list[int]) -> None:
        records = [self.make(length) for length in lengths]
        expected = self.model.write_many(records)
        try:
            written = self.ring.write_many(records)
        except RecordTooLarge:
            written = None
        assert written == expected

    @rule(lengths=st.lists(st.one_of(st.none(), st.integers(0, MAX_RECORD)), max_size=12))
    def write_many_skipping_retired(self, lengths: list[int | None]) -> None:
        """None entries (records retired while in a backlog) are skipped and counted."""
        records = [None if length is None else self.make(length) for length in lengths]
        present = [record for record in records if record is not None]
        accepted = self.model.write_many(present)
        assert accepted is not None
        expected = len(records) if accepted == len(present) \
            else next(i for i, r in enumerate(records) if r is present[accepted])
        assert self.ring.write_many(records) == expected

    @rule(length=record_lengths)
    def try_write(self, length: int) -> None:
        record = self.make(length)
        expected = self.model.write_many([record])
        try:
            written: bool | None = self.ring.try_write(record)
        except RecordTooLarge:
            written = None
        assert written == (None if expected is None else expected == 1)

    @rule(length=record_lengths)
    def wait_writable_without_blocking(self, length: int) -> None:
        if length > MAX_RECORD:
            return
        # A zero-timeout wait may write a wrap marker: the model learns it by writing.
        if self.ring.wait_writable(length, timeout=0):
            record = self.make(length)
            assert self.model.write_many([record]) == 1
            assert self.ring.try_write(record)
        else:
            probe = RingModel(CAPACITY, self.model.write_offset, self.model.used,
                              deque(self.model.entries), list(self.model.read_out))
            assert probe.write_many([self.make(length)]) == 0
            self.sync_wrap_marker(length)

    def sync_wrap_marker(self, length: int) -> None:
        """Mirror the marker a refused wait leaves behind when it had room for it."""
        room_to_end = CAPACITY - self.model.write_offset
        if footprint(length) > room_to_end and self.model.used + room_to_end <= CAPACITY:
            self.model.entries.append(("pad", b"", room_to_end))
            self.model.used += room_to_end
            self.model.write_offset = 0

    @precondition(lambda self: not self.holding_views)
    @rule(max_records=st.integers(1, 20), release=st.booleans())
    def read_many(self, max_records: int, release: bool) -> None:
        views = self.ring.read_many(max_records)
        assert [bytes(view) for view in views] == self.model.read_many(max_records)
        del views
        if release:
            self.ring.release()
            self.model.release()
        else:
            self.holding_views = True

    @precondition(lambda self: self.holding_views)
    @rule()
    def release(self) -> None:
        self.ring.release()
        self.model.release()
        self.holding_views = False

    @invariant()
    def readable_iff_model_has_entries(self) -> None:
        assert self.ring.readable() == bool(self.model.entries)


RingMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60,
                                         deadline=None)
test_ring_matches_model_under_random_writes_and_reads = RingMachine.TestCase


class CompiledRingMachine(RingMachine):
    copy_loop = staticmethod(COMPILED_COPY or runscan.copy_records_py)


CompiledRingMachine.TestCase.settings = RingMachine.TestCase.settings
test_compiled_ring_matches_model_under_random_writes_and_reads = pytest.mark.skipif(
    COMPILED_COPY is None, reason="supervisor/transport/_runscan not built (pip install -e .)",
)(CompiledRingMachine.TestCase)
