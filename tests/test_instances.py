"""Crash recovery in the supervisor's Instance: held records go back in doubling
windows, and only a crash with one record of the window unacked blames that record."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from loop_paths import COPY_LOOPS

from supervisor.daemon.instances import AgentRuntime, Instance
from supervisor.transport import runscan, wire
from supervisor.transport.ring import Ring


@pytest.fixture(autouse=True, params=COPY_LOOPS)
def copy_loop(request, monkeypatch):
    """Every test here runs on both ring copy loops (compiled and pure Python)."""
    monkeypatch.setattr(runscan, "copy_records", request.param)


def make_instance() -> Instance:
    config = SimpleNamespace(ring_size=64 * 1024, poison_after=3)
    inst = Instance(AgentRuntime("a.agent", 0, ("t",), config, "app"), 0)
    inst.inbound = Ring.create(64 * 1024)
    return inst


def hold(inst: Instance, offsets: range) -> None:
    """Dispatch records (topic 0, partition 0) to ``inst`` as the daemon does."""
    keys = [(0, 0, offset) for offset in offsets]
    for key in keys:
        inst.unacked[key] = wire.encode_record(0, 0, key[2], -1, None, b"v", None)
    assert inst.submit(keys) == []


def ring_offsets(inst: Instance, reader: Ring) -> list[int]:
    views = reader.read_many(1000)
    offsets = [wire.decode_record(view).offset for view in views]
    del views
    reader.release()
    return offsets


def crash(inst: Instance) -> Ring:
    """The process died: died() as the daemon calls it, then a fresh ring."""
    inst.died()
    inst.inbound = Ring.create(64 * 1024)
    return Ring.attach(inst.inbound.fds())


def test_records_held_at_a_crash_go_back_in_doubling_windows():
    inst = make_instance()
    reader = Ring.attach(inst.inbound.fds())  # type: ignore[union-attr]
    hold(inst, range(10))
    assert ring_offsets(inst, reader) == list(range(10))
    reader = crash(inst)
    windows = []
    while inst.pending or inst.window_keys:
        inst.pump()
        written = ring_offsets(inst, reader)
        if written:
            windows.append(written)
        for offset in written:
            inst.acked(0, 0, offset, offset)
    assert windows == [[0], [1, 2], [3, 4, 5, 6], [7, 8, 9]]
    assert inst.window == 0  # back to streaming
    hold(inst, range(10, 13))
    assert ring_offsets(inst, reader) == [10, 11, 12]


def test_a_record_that_crashes_its_worker_is_isolated_in_a_few_crashes():
    inst = make_instance()
    reader = Ring.attach(inst.inbound.fds())  # type: ignore[union-attr]
    culprit = (0, 0, 1000)
    hold(inst, range(900, 1100))
    ring_offsets(inst, reader)
    blamed: dict[tuple[int, int, int], int] = {}
    crashes = 0
    while culprit in inst.unacked:
        # The worker processes what it was given in order; records before the culprit
        # finish but (sinks pending) are not acked before the culprit kills it.
        suspect = inst.lone_suspect()
        if suspect is not None:
            blamed[suspect] = blamed.get(suspect, 0) + 1
            if blamed[suspect] >= 3:
                del inst.unacked[suspect]
                break
        reader = crash(inst)
        crashes += 1
        while True:
            inst.pump()
            written = ring_offsets(inst, reader)
            if (0, 0, culprit[2]) in {(0, 0, o) for o in written}:
                break  # the culprit is in this window: the worker dies
            for offset in written:
                inst.acked(0, 0, offset, offset)
            assert written or not inst.pending
    assert set(blamed) == {culprit}
    assert crashes <= 12  # about log2(200) + poison_after, never one per record
    assert all(key[2] > 1000 for key in inst.unacked)  # everything before it went through


def fill(inst: Instance, offsets: range, partition: int = 0) -> list[tuple[int, int]]:
    """Dispatch records of ``partition``; the partitions submit says to pause."""
    keys = [(0, partition, offset) for offset in offsets]
    records = [wire.encode_record(0, partition, o, -1, None, b"v" * 100, None)
               for o in offsets]
    inst.unacked.update(zip(keys, records, strict=True))
    return inst.submit(keys, records)


def test_a_full_ring_queues_a_backlog_without_pausing_until_the_high_water_mark():
    inst = make_instance()
    assert fill(inst, range(600)) == []      # the ring (64 KiB) fills, nothing paused
    assert inst.pending and not inst.paused
    assert inst.pending_bytes <= inst.high_bytes
    assert fill(inst, range(600, 1600), partition=1) == [(0, 0), (0, 1)]
    assert inst.pending_bytes > inst.high_bytes
    assert fill(inst, range(5), partition=2) == [(0, 2)]  # once blocked, every feeder


def test_paused_partitions_resume_below_the_low_water_mark_not_when_empty():
    inst = make_instance()
    reader = Ring.attach(inst.inbound.fds())  # type: ignore[union-attr]
    fill(inst, range(2000))
    assert inst.paused
    released: list[tuple[int, int]] = []
    while not released:
        views = reader.read_many(100)
        del views
        reader.release()
        inst.pump()
        released = inst.release_paused()
        if not released:
            assert not inst.below_low_water()
    assert released == [(0, 0)] and not inst.paused
    assert inst.pending                      # resumed with a backlog left to cover
    assert inst.below_low_water()


def test_backlog_bytes_are_recounted_when_a_crash_puts_everything_back_in_line():
    inst = make_instance()
    fill(inst, range(1000))
    inst.died()
    assert len(inst.pending) == 1000
    assert inst.pending_bytes == sum(len(record) for record in inst.unacked.values())


def test_the_pump_writes_only_live_records_of_the_backlog_in_dispatch_order():
    inst = make_instance()
    reader = Ring.attach(inst.inbound.fds())  # type: ignore[union-attr]
    runs = []
    for partition, count in ((0, 800), (1, 300), (2, 300)):
        records = [wire.encode_record(0, partition, o, -1, None, b"v" * 50, None)
                   for o in range(count)]
        runs += inst.unacked.add_run(0, partition, list(range(count)), records, True,
                                     sum(map(len, records)))
    assert inst.submit_runs(runs) == []   # the 64 KiB ring takes ~680 of partition 0
    assert 600 < len(inst.pending) < 800
    inst.pending.drop_partitions({(0, 1)}, inst.unacked)   # revoked while it waits
    del inst.unacked[(0, 2, 5)]                            # poisoned while it waits
    inst.unacked.retire(0, 2, 100, 199)                    # (a stray ack) retired too
    seen: list[tuple[int, int]] = []
    while True:
        views = reader.read_many(10_000)
        seen += [(r.partition, r.offset) for r in map(wire.decode_record, views)]
        del views
        reader.release()
        if not inst.pump() and not reader.readable():
            break
    expected = [(0, o) for o in range(800)] + \
        [(2, o) for o in range(300) if o != 5 and not 100 <= o <= 199]
    assert seen == expected
    assert not inst.pending and inst.pending_bytes == 0
