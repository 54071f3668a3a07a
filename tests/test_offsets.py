"""OffsetTracker: commit the lowest unacked offset, never past one in flight."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.daemon.commit import OffsetTracker

TP = ("adds", 0)


def _runs(offsets):
    """Contiguous runs of sorted offsets as (first, last) ranges, like worker acks."""
    runs = []
    for offset in sorted(offsets):
        if runs and runs[-1][1] == offset - 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    return [tuple(r) for r in runs]


@pytest.mark.parametrize("acked,expected", [
    (list(range(1, 11)), 11),
    ([1, 2, 3, 4, 5, 6, 7, 8, 10], 9),
    ([1, 2, 3, 4, 6, 7, 8, 10], 5),
    ([1, 3, 4, 6, 7, 8, 10], 2),
])
def test_faust_notes_table_commit_is_lowest_unacked(acked, expected):
    tracker = OffsetTracker()
    tracker.set_committed(TP, 1)
    tracker.dispatched_range(TP, 1, 10)
    for first, last in reversed(_runs(acked)):  # out of order on purpose
        tracker.acked(TP, first, last)
    assert tracker.committable() == {TP: expected}


def test_commit_waits_for_slow_earlier_event():
    tracker = OffsetTracker()
    for offset in range(100, 110):
        tracker.dispatched(TP, offset)
    tracker.acked(TP, 101, 109)  # everything after the slow event 100 is done
    assert tracker.committable() == {TP: 100}
    assert tracker.unacked(TP) == [100]
    tracker.acked(TP, 100, 100)
    assert tracker.committable() == {TP: 110}


def test_only_moved_partitions_are_committable_after_mark():
    tracker = OffsetTracker()
    tracker.dispatched_range(("a", 0), 0, 4)
    tracker.dispatched_range(("a", 1), 0, 4)
    tracker.acked(("a", 0), 0, 4)
    first = tracker.committable()
    assert first == {("a", 0): 5, ("a", 1): 0}
    tracker.mark_committed(first)
    assert tracker.committable() == {}
    tracker.acked(("a", 1), 0, 1)
    assert tracker.committable() == {("a", 1): 2}


def test_failed_commit_is_offered_again():
    tracker = OffsetTracker()
    tracker.dispatched_range(TP, 0, 2)
    tracker.acked(TP, 0, 2)
    assert tracker.committable() == {TP: 3}
    assert tracker.committable() == {TP: 3}  # nothing marked: the commit did not succeed


def test_message_fanned_out_to_two_agents_waits_for_both_lanes():
    tracker = OffsetTracker()
    tracker.dispatched_range(TP, 0, 9, lane=0)
    tracker.dispatched_range(TP, 0, 9, lane=1)
    tracker.acked(TP, 0, 9, lane=0)
    tracker.acked(TP, 0, 3, lane=1)
    assert tracker.committable() == {TP: 4}
    assert tracker.in_flight(TP) == 6


def test_redispatch_after_crash_does_not_duplicate_tracking():
    tracker = OffsetTracker()
    tracker.dispatched_range(TP, 0, 5)
    tracker.acked(TP, 0, 1)
    for offset in tracker.unacked(TP):  # the instance died: send 2..5 again
        tracker.dispatched(TP, offset)
    tracker.dispatched_range(TP, 3, 7)
    assert tracker.unacked(TP) == [2, 3, 4, 5, 6, 7]
    tracker.acked(TP, 2, 7)
    assert tracker.committable() == {TP: 8}


def test_gaps_in_offsets_do_not_hold_the_commit():
    tracker = OffsetTracker()
    for offset in (10, 11, 15, 16):  # 12..14 compacted away
        tracker.dispatched(TP, offset)
    tracker.acked(TP, 15, 16)
    tracker.acked(TP, 10, 11)
    assert tracker.committable() == {TP: 17}


def test_forget_drops_revoked_partition_and_ignores_late_acks():
    tracker = OffsetTracker()
    tracker.dispatched_range(TP, 0, 3)
    tracker.forget(TP)
    tracker.acked(TP, 0, 3)
    assert tracker.committable() == {}
    assert tracker.unacked(TP) == []


@st.composite
def _scenario(draw):
    """Dispatched offsets with gaps, acked as ranges in a random order."""
    gaps = draw(st.lists(st.integers(1, 3), min_size=1, max_size=60))
    offsets, offset = [], draw(st.integers(0, 1000))
    for gap in gaps:
        offsets.append(offset)
        offset += gap
    done = draw(st.lists(st.booleans(), min_size=len(offsets), max_size=len(offsets)))
    # ranges over consecutive *dispatched* offsets, as a partition-ordered worker sends
    ranges, run = [], []
    for o, d in zip(offsets, done, strict=True):
        if d:
            run.append(o)
        elif run:
            ranges.append((run[0], run[-1]))
            run = []
    if run:
        ranges.append((run[0], run[-1]))
    order = draw(st.permutations(ranges))
    return offsets, order


@settings(max_examples=300, deadline=None)
@given(_scenario())
def test_committed_offset_never_passes_an_unacked_one(scenario):
    offsets, order = scenario
    tracker = OffsetTracker()
    for o in offsets:
        tracker.dispatched(TP, o)
    done = set()
    for first, last in order:
        tracker.acked(TP, first, last)
        done.update(o for o in offsets if first <= o <= last)
        position = tracker.committable()[TP]
        unacked = [o for o in offsets if o not in done]
        if unacked:
            assert position == unacked[0]
        else:
            assert position == offsets[-1] + 1
        assert tracker.unacked(TP) == unacked
    for o in offsets:  # ack the rest: the commit reaches the end
        tracker.acked(TP, o, o)
    assert tracker.committable() == {TP: offsets[-1] + 1}


def test_caught_up_offers_only_partitions_with_nothing_in_flight():
    tracker = OffsetTracker()
    busy, idle = ("adds", 0), ("adds", 1)
    for offset in range(5):
        tracker.dispatched(busy, offset)
        tracker.dispatched(idle, offset)
    tracker.acked(busy, 0, 3)
    tracker.acked(idle, 0, 4)
    assert tracker.caught_up() == {idle: 5}
    assert tracker.committable() == {busy: 4, idle: 5}


def test_caught_up_waits_for_every_lane_and_skips_what_was_committed():
    tracker = OffsetTracker()
    tracker.dispatched(TP, 7, lane=0)
    tracker.dispatched(TP, 7, lane=1)
    tracker.acked(TP, 7, 7, lane=0)
    assert tracker.caught_up() == {}  # the other agent still holds offset 7
    tracker.acked(TP, 7, 7, lane=1)
    assert tracker.caught_up() == {TP: 8}
    tracker.mark_committed({TP: 8})
    assert tracker.caught_up() == {}


def test_dispatched_many_tracks_a_run_like_one_dispatched_per_offset():
    one_by_one, batched = OffsetTracker(), OffsetTracker()
    runs = [[0, 1, 2], [3, 5, 6], [2, 3, 7, 8], [9, 8, 10]]  # a redelivery, a reorder
    for run in runs:
        for offset in run:
            one_by_one.dispatched(TP, offset)
        batched.lane(TP).dispatched_many(run)
    assert batched.unacked(TP) == one_by_one.unacked(TP) == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert batched.lane(TP).next_offset == 11
