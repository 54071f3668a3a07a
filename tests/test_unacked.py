"""An instance's unacked records kept per run of offsets (issue 21) behave exactly as the
dict of one entry per record they replace: checked against that dict under random
runs, ACK ranges, deletions, replacements and revocations; and the backlog, segments
of those runs, never writes a record retired while it waited."""

from __future__ import annotations

import os

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from supervisor.daemon.unacked import Backlog, UnackedRecords
from supervisor.transport.ring import Ring

parts = st.tuples(st.integers(0, 1), st.integers(0, 1))   # (topic index, partition)
offsets = st.integers(0, 60)


class UnackedMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.runs = UnackedRecords()
        self.model: dict[tuple[int, int, int], bytes] = {}
        self.serial = 0

    def record(self) -> bytes:
        self.serial += 1
        return b"r%d" % self.serial

    @rule(tp=parts, wanted=st.lists(offsets, max_size=12), ordered=st.booleans())
    def dispatch_a_run(self, tp, wanted, ordered):
        # A run never names a record already held (the data path dispatches each once).
        fresh = list(dict.fromkeys(o for o in wanted if (*tp, o) not in self.model))
        if not fresh:
            return
        if ordered:
            fresh.sort()
        records = [self.record() for _ in fresh]
        self.runs.add_run(tp[0], tp[1], fresh, list(records), ordered)
        self.model.update({(*tp, o): r for o, r in zip(fresh, records, strict=True)})

    @rule(tp=parts, first=offsets, span=st.integers(0, 20))
    def ack_a_range(self, tp, first, span):
        self.runs.retire(tp[0], tp[1], first, first + span)
        for key in [k for k in self.model if k[:2] == tp and first <= k[2] <= first + span]:
            del self.model[key]

    @rule(data=st.data())
    def delete_one(self, data):
        if self.model:
            key = data.draw(st.sampled_from(sorted(self.model)))
            del self.runs[key]
            del self.model[key]

    @rule(tp=parts, offset=offsets)
    def set_one(self, tp, offset):
        record = self.record()
        self.runs[(*tp, offset)] = record
        self.model[(*tp, offset)] = record

    @rule(tp=parts)
    def revoke(self, tp):
        self.runs.forget(*tp)
        for key in [k for k in self.model if k[:2] == tp]:
            del self.model[key]

    @rule(pairs=st.lists(st.tuples(parts, offsets), max_size=8))
    def move_in(self, pairs):
        items = [((*tp, o), self.record()) for tp, o in pairs]
        self.runs.update(items)
        self.model.update(items)

    @invariant()
    def same_records_in_dispatch_order(self):
        assert len(self.runs) == len(self.model)
        assert list(self.runs.items()) == list(self.model.items())
        assert list(Backlog.of(self.runs)) == list(self.model)
        for tp in [(0, 0), (0, 1), (1, 0), (1, 1)]:
            assert self.runs.holds(*tp) == any(k[:2] == tp for k in self.model)
        for offset in (0, 7, 30, 60):
            assert ((0, 1, offset) in self.runs) == ((0, 1, offset) in self.model)


UnackedMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                            deadline=None)
test_runs_behave_as_one_dict_entry_per_record = UnackedMachine.TestCase


def test_an_ack_range_over_whole_runs_leaves_nothing_held():
    runs = UnackedRecords()
    runs.add_run(0, 3, [10, 11, 13], [b"a", b"b", b"c"], True)
    runs.add_run(0, 3, [14, 20], [b"d", b"e"], True)
    runs.retire(0, 3, 10, 20)
    assert not runs and not runs.holds(0, 3) and not runs.runs()


def test_a_record_retired_while_it_waits_in_the_backlog_is_never_written():
    ring = Ring.create(1024)
    reader = Ring.attach([os.dup(fd) for fd in ring.fds()])
    try:
        runs = UnackedRecords()
        (kept,) = runs.add_run(0, 0, [1, 2, 3], [b"one", b"two", b"three"], True)
        (gone,) = runs.add_run(0, 1, [5, 6], [b"five", b"six"], True)
        backlog = Backlog.of(runs)
        del runs[(0, 0, 2)]
        backlog.drop_partitions({(0, 1)}, runs)
        assert list(backlog) == [(0, 0, 1), (0, 0, 3)] and not gone.alive
        for seg in list(backlog.segments()):
            upto, _copied = ring.write_run(seg[0].records, seg[1], seg[2])
            backlog.consumed(seg, upto)
        assert not backlog
        views = reader.read_many(10)
        assert [bytes(view) for view in views] == [b"one", b"three"]
        del views
        assert list(runs) == [(0, 0, 1), (0, 0, 3)] and kept.alive == 2
    finally:
        reader.close()
        ring.close()
