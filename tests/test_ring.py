"""One ring in one process: record framing, wrap-around, full/oversized, doorbell flags."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest
from loop_paths import COPY_LOOPS

from supervisor.transport import runscan
from supervisor.transport.ring import RecordTooLarge, Ring


@pytest.fixture(params=COPY_LOOPS)
def ring(request, monkeypatch):
    """Every ring test runs on both record-copy loops (compiled and pure Python)."""
    monkeypatch.setattr(runscan, "copy_records", request.param)
    created = Ring.create(1024)
    yield created
    created.close()


def drain(ring: Ring) -> list[bytes]:
    """Everything in the ring as bytes (copied before release, as the contract asks)."""
    records: list[bytes] = []
    while True:
        views = ring.read_many(1000)
        records.extend(bytes(view) for view in views)
        del views
        ring.release()
        if not ring.readable():
            return records


def test_records_of_every_small_length_come_back_identical_and_in_order(ring):
    records = [bytes(range(n % 256)) * (1 + n // 256) for n in range(60)]
    sent = 0
    received: list[bytes] = []
    while sent < len(records):
        sent += ring.write_many(records, sent)
        received.extend(drain(ring))
    assert received == records


def test_empty_record_is_a_record(ring):
    assert ring.write_many([b"", b"x", b""]) == 3
    assert drain(ring) == [b"", b"x", b""]


def test_record_larger_than_ring_raises_at_once_without_writing(ring):
    with pytest.raises(RecordTooLarge):
        ring.write_many([b"x" * (ring.max_record_size + 1)])
    with pytest.raises(RecordTooLarge):
        ring.wait_writable(ring.max_record_size + 1, timeout=60)
    assert not ring.readable()


def test_oversized_record_stops_a_batch_then_raises_when_first(ring):
    batch = [b"a", b"x" * (ring.max_record_size + 1), b"b"]
    assert ring.write_many(batch) == 1
    with pytest.raises(RecordTooLarge):
        ring.write_many(batch, 1)
    assert ring.write_many(batch, 2) == 1
    assert drain(ring) == [b"a", b"b"]


def test_full_ring_gives_a_short_write_then_zero(ring):
    record = b"r" * 120  # 128 bytes with its header: 8 fit in 1024
    assert ring.write_many([record] * 20) == 8
    assert ring.write_many([record]) == 0
    assert not ring.try_write(b"")
    assert not ring.wait_writable(len(record), timeout=0)
    ring.read_many(1)
    ring.release()
    assert ring.try_write(record)
    assert drain(ring) == [record] * 8


def test_largest_record_fits_exactly_in_an_empty_ring(ring):
    biggest = bytes(range(256)) * (ring.max_record_size // 256) + b"z" * (
        ring.max_record_size % 256)
    assert len(biggest) == ring.capacity - 8
    assert ring.try_write(biggest)
    assert not ring.try_write(b"")
    assert drain(ring) == [biggest]


def test_record_that_does_not_fit_before_the_end_wraps_to_the_start(ring):
    assert ring.write_many([b"a" * 600]) == 1        # 608 bytes, 416 left before the end
    assert drain(ring) == [b"a" * 600]
    assert ring.try_write(b"b" * 500)                 # 512 > 416: wrap marker, then offset 0
    assert drain(ring) == [b"b" * 500]


def test_largest_record_waits_for_the_reader_to_pass_the_wrap_marker(ring):
    assert ring.try_write(b"a" * 8)
    assert drain(ring) == [b"a" * 8]
    # Empty ring, but head is at offset 16: the record needs the whole data area.
    assert not ring.try_write(b"m" * ring.max_record_size)
    assert ring.read_many(10) == []                   # reader skips the marker by itself
    assert ring.try_write(b"m" * ring.max_record_size)
    assert drain(ring) == [b"m" * ring.max_record_size]


def test_release_before_reading_more_frees_only_what_was_read(ring):
    assert ring.write_many([b"1" * 100, b"2" * 100, b"3" * 100]) == 3
    first = ring.read_many(2)
    assert [bytes(v) for v in first] == [b"1" * 100, b"2" * 100]
    del first
    ring.release()
    assert drain(ring) == [b"3" * 100]


def test_attached_ring_shares_records_and_positions_with_the_creator(ring):
    twin = Ring.attach([os.dup(fd) for fd in ring.fds()])
    try:
        assert twin.capacity == ring.capacity
        assert ring.write_many([b"hello", b"world"]) == 2
        assert drain(twin) == [b"hello", b"world"]
        assert ring.write_many([b"x" * 500, b"y" * 500]) == 1   # twin released: room again
    finally:
        twin.close()


def test_writer_rings_data_doorbell_only_when_reader_announced_sleep(ring):
    poller = select.poll()
    poller.register(ring.reader_fd, select.POLLIN)
    assert ring.try_write(b"busy")
    assert poller.poll(0) == []                       # nobody asleep: no system call made
    drain(ring)
    assert ring.prepare_read_sleep()
    assert ring.try_write(b"wake")
    assert poller.poll(0) != []
    ring.ack_doorbell()
    assert poller.poll(0) == []
    assert drain(ring) == [b"wake"]


def test_prepare_read_sleep_refuses_when_data_is_waiting(ring):
    assert ring.try_write(b"x")
    assert not ring.prepare_read_sleep()


def test_sleeping_writer_is_woken_by_release_not_by_its_timeout(ring):
    assert ring.write_many([b"r" * 120] * 8) == 8
    outcome: list[bool] = []
    writer = threading.Thread(target=lambda: outcome.append(ring.wait_writable(120, 60)))
    writer.start()
    while ring.sleeps == 0:      # counted after the announcement, just before the poll
        time.sleep(0.001)
    ring.read_many(1)
    ring.release()
    writer.join()
    assert outcome == [True]
    assert ring.timeouts == 0


def test_sleeping_reader_is_woken_by_a_write_not_by_its_timeout(ring):
    outcome: list[bool] = []
    reader = threading.Thread(target=lambda: outcome.append(ring.wait_readable(60)))
    reader.start()
    while ring.sleeps == 0:
        time.sleep(0.001)
    assert ring.try_write(b"wake")
    reader.join()
    assert outcome == [True]
    assert ring.timeouts == 0


def test_wait_readable_returns_false_on_timeout_and_true_with_data(ring):
    assert not ring.wait_readable(timeout=0.01)
    assert ring.timeouts == 1
    assert ring.try_write(b"x")
    assert ring.wait_readable(timeout=0.01)


def test_capacity_must_be_a_power_of_two():
    with pytest.raises(ValueError):
        Ring.create(1000)


@pytest.mark.parametrize("size", [0, 8192], ids=["too-small", "no-ring-header"])
def test_attach_rejects_a_file_that_is_not_a_ring(size):
    fd = os.memfd_create("not-a-ring")
    os.ftruncate(fd, size)
    bells = [os.eventfd(0), os.eventfd(0)]
    try:
        with pytest.raises(ValueError):
            Ring.attach([fd, *bells])
    finally:
        for opened in (fd, *bells):
            os.close(opened)


def test_writer_doorbell_rings_for_an_event_loop_writer_after_release(ring):
    poller = select.poll()
    poller.register(ring.writer_fd, select.POLLIN)
    assert ring.write_many([b"r" * 120] * 8) == 8
    assert ring.prepare_write_sleep(120)              # full: the writer may sleep
    assert poller.poll(0) == []
    ring.read_many(1)
    ring.release()
    assert poller.poll(0) != []
    ring.ack_write_doorbell()
    assert poller.poll(0) == []
    assert not ring.prepare_write_sleep(120)          # room now: write instead of sleeping


def test_prepare_write_sleep_rejects_a_record_that_can_never_fit(ring):
    with pytest.raises(RecordTooLarge):
        ring.prepare_write_sleep(ring.capacity)


def test_peer_fd_is_a_pidfd_only_after_watch_peer(ring):
    assert ring.peer_fd == -1
    ring.watch_peer(os.getpid())
    assert ring.peer_fd >= 0
    poller = select.poll()
    poller.register(ring.peer_fd, select.POLLIN)
    assert poller.poll(0) == []                        # this process is alive
