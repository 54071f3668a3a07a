"""Router: which instance gets a message, by ordering mode."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.daemon.router import Router


def _loads(router):
    return sorted(len(router.partitions_of(i)) for i in range(router.instances))


def test_partition_mode_keeps_a_partition_on_one_instance():
    router = Router("partition", 3)
    router.assign([("t", p) for p in range(6)])
    for p in range(6):
        chosen = {router.route(("t", p), bytes([k])) for k in range(20)}
        assert len(chosen) == 1
    assert _loads(router) == [2, 2, 2]


def test_partition_mode_batch_matches_single_routes():
    router = Router("partition", 2)
    router.assign([("t", 0), ("t", 1)])
    assert router.route_batch(("t", 1), [b"a", None, b"c"]) == [router.owner(("t", 1))] * 3


def test_new_partitions_fill_the_emptiest_instance_without_moving_others():
    router = Router("partition", 2)
    router.assign([("t", 0), ("t", 1)])
    before = {tp: router.owner(tp) for tp in [("t", 0), ("t", 1)]}
    moves = router.assign([("t", 2), ("t", 3)])
    assert moves == {}
    assert {tp: router.owner(tp) for tp in before} == before
    assert _loads(router) == [2, 2]


def test_revoke_moves_a_partition_when_counts_drift_apart():
    router = Router("partition", 2)
    router.assign([("t", p) for p in range(4)])
    moves = router.revoke(router.partitions_of(0))
    loads = [len(router.partitions_of(i)) for i in (0, 1)]
    assert loads == [1, 1]
    assert len(moves) == 1 and next(iter(moves.values())) == 0


def test_fewer_instances_after_reload_moves_orphaned_partitions():
    router = Router("partition", 4)
    router.assign([("t", p) for p in range(8)])
    kept = {tp: router.owner(tp) for tp in router.partitions_of(0) + router.partitions_of(1)}
    moves = router.set_instances(2)
    assert all(router.owner(tp) in (0, 1) for tp in [("t", p) for p in range(8)])
    assert [len(router.partitions_of(i)) for i in (0, 1)] == [4, 4]
    assert set(moves).isdisjoint(kept)


def test_unannounced_partition_is_adopted_by_least_loaded_instance():
    router = Router("partition", 2)
    router.assign([("t", 0)])
    assert router.route(("t", 9), None) != router.owner(("t", 0))


def test_key_mode_uses_crc32_so_every_process_agrees():
    router = Router("key", 4)
    assert router.route(("a", 0), b"user-1") == zlib.crc32(b"user-1") % 4
    assert router.route(("b", 3), b"user-1") == router.route(("a", 0), b"user-1")
    assert router.route_batch(("a", 0), [b"x", b"y"]) == [zlib.crc32(b"x") % 4,
                                                          zlib.crc32(b"y") % 4]


def test_none_keys_are_spread_round_robin_in_key_mode():
    router = Router("key", 3)
    assert router.route_batch(("a", 0), [None] * 6) == [0, 1, 2, 0, 1, 2]


def test_none_mode_round_robin_skips_blocked_instances():
    router = Router("none", 3)
    router.set_blocked(1, True)
    assert [router.route(("a", 0), b"k") for _ in range(4)] == [0, 2, 0, 2]
    router.set_blocked(1, False)
    assert sorted(router.route(("a", 0), None) for _ in range(3)) == [0, 1, 2]


def test_none_mode_with_every_instance_blocked_still_answers():
    router = Router("none", 2)
    router.set_blocked(0, True)
    router.set_blocked(1, True)
    assert router.route(("a", 0), None) in (0, 1)


def test_bad_ordering_or_instance_count_is_refused():
    with pytest.raises(ValueError):
        Router("random", 1)
    with pytest.raises(ValueError):
        Router("key", 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.lists(st.tuples(st.booleans(), st.sets(st.integers(0, 15))),
                                   max_size=8))
def test_partition_spread_stays_even_through_any_assign_revoke_sequence(instances, steps):
    router = Router("partition", instances)
    for is_assign, parts in steps:
        tps = [("t", p) for p in parts]
        router.assign(tps) if is_assign else router.revoke(tps)
        loads = [len(router.partitions_of(i)) for i in range(instances)]
        assert max(loads) - min(loads) <= 1
