"""Creating, passing and closing rings leaks neither fds nor mappings."""

from __future__ import annotations

import os
import socket

from supervisor.transport.fdpass import receive_ring, send_ring
from supervisor.transport.ring import Ring


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def memfd_mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum("agentd-ring" in line for line in maps)


def test_thousand_create_close_cycles_leave_no_fds_or_mappings():
    Ring.create(4096).close()              # warm imports and caches before counting
    fds_before, maps_before = open_fds(), memfd_mappings()
    for _ in range(1000):
        ring = Ring.create(4096)
        ring.watch_peer(os.getpid())
        assert ring.try_write(b"payload")
        views = ring.read_many(10)
        del views
        ring.release()
        ring.close()
    assert open_fds() == fds_before
    assert memfd_mappings() == maps_before


def test_thousand_send_receive_close_cycles_leave_no_fds_or_mappings():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        fds_before, maps_before = open_fds(), memfd_mappings()
        for _ in range(1000):
            with Ring.create(4096) as ring:
                send_ring(left, ring)
                with receive_ring(right) as twin:
                    assert ring.try_write(b"across")
                    assert [bytes(v) for v in twin.read_many(1)] == [b"across"]
        assert open_fds() == fds_before
        assert memfd_mappings() == maps_before
    finally:
        left.close()
        right.close()


def test_received_fds_are_new_numbers_for_the_same_ring():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right, Ring.create(4096) as ring:
        send_ring(left, ring)
        with receive_ring(right) as twin:
            assert set(twin.fds()).isdisjoint(ring.fds())
            assert twin.capacity == ring.capacity


def test_close_is_idempotent():
    ring = Ring.create(4096)
    ring.close()
    ring.close()


def test_close_with_a_view_still_held_frees_the_mapping_with_the_last_view():
    fds_before, maps_before = open_fds(), memfd_mappings()
    ring = Ring.create(4096)
    assert ring.try_write(b"kept")
    kept = ring.read_many(1)
    ring.close()
    assert open_fds() == fds_before + 1                # the mapping's memfd, nothing else
    assert bytes(kept[0]) == b"kept"
    del kept
    assert open_fds() == fds_before
    assert memfd_mappings() == maps_before
