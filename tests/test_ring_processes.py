"""Two processes on one ring: the peer is a fresh interpreter that got the fds by SCM_RIGHTS."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ring_peer import RECORD_HEADER, WAIT_TIMEOUT

from supervisor.transport.doorbell import PeerGone
from supervisor.transport.fdpass import send_ring
from supervisor.transport.ring import Ring

PEER = Path(__file__).with_name("ring_peer.py")


@contextmanager
def peer(ring: Ring, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], socket.socket]]:
    """Start ring_peer.py with one end of a socketpair and send it the ring's fds."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = subprocess.Popen([sys.executable, str(PEER), args[0], str(theirs.fileno()),
                              *args[1:]], pass_fds=[theirs.fileno()])
    theirs.close()
    try:
        send_ring(ours, ring)
        yield child, ours
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        ours.close()


def receive_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        line += chunk
    return line


def test_million_records_arrive_complete_in_order_across_wraps_with_sleeps():
    count = 1_000_000
    rng = random.Random(4)
    payloads = [rng.randbytes(rng.choice((0, 1, 7, 8, 9, 50, 100, 300, 1000, 3000)))
                for _ in range(257)]
    checksums = [zlib.crc32(p) for p in payloads]
    pack = RECORD_HEADER.pack
    with Ring.create(64 * 1024) as ring, peer(ring, "read", str(count)) as (child, sock):
        ring.watch_peer(child.pid)
        sent = batches = bytes_sent = 0
        while sent < count:
            size = min(rng.randrange(1, 400), count - sent)
            batch = [pack(serial, checksums[serial % 257]) + payloads[serial % 257]
                     for serial in range(sent, sent + size)]
            done = 0
            while done < size:
                done += ring.write_many(batch, done)
                if done < size:
                    ring.wait_writable(len(batch[done]), WAIT_TIMEOUT)
            sent += size
            bytes_sent += sum(8 + -(-len(record) // 8) * 8 for record in batch)
            batches += 1
            if batches % 89 == 0:
                time.sleep(0.002)          # let the reader empty the ring and sleep
        report = json.loads(receive_line(sock))
        assert child.wait() == 0
        writer_sleeps, writer_timeouts = ring.sleeps, ring.timeouts
        laps = bytes_sent // ring.capacity
    assert laps > 1000                     # the data area wrapped around that many times
    assert report["errors"] == []
    assert report["received"] == count
    assert report["sleeps"] > 0 and writer_sleeps > 0
    assert report["timeouts"] == 0 and writer_timeouts == 0


def kill_soon(pid: int) -> threading.Thread:
    """SIGKILL ``pid`` from another thread once the caller is (probably) waiting."""
    def kill() -> None:
        time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    killer = threading.Thread(target=kill)
    killer.start()
    return killer


@pytest.fixture
def held_ring():
    """A ring whose peer process holds it without reading or writing, until killed."""
    with Ring.create(4096) as ring, peer(ring, "hold") as (child, sock):
        assert receive_line(sock) == b"ready\n"
        ring.watch_peer(child.pid)
        yield ring, child


def test_waiting_reader_raises_peer_gone_when_writer_is_killed(held_ring):
    ring, child = held_ring
    killer = kill_soon(child.pid)
    with pytest.raises(PeerGone):
        ring.wait_readable(timeout=30)
    killer.join()
    assert ring.timeouts == 0


def test_waiting_writer_raises_peer_gone_when_reader_is_killed(held_ring):
    ring, child = held_ring
    while ring.try_write(b"x" * 100):
        pass
    killer = kill_soon(child.pid)
    with pytest.raises(PeerGone):
        ring.wait_writable(100, timeout=30)
    killer.join()
    assert ring.timeouts == 0


def test_records_written_before_the_peer_died_are_still_read(held_ring):
    ring, child = held_ring
    assert ring.try_write(b"last words")
    child.kill()
    child.wait()
    assert ring.wait_readable(timeout=30)
    assert [bytes(v) for v in ring.read_many(10)] == [b"last words"]
    ring.release()
    with pytest.raises(PeerGone):
        ring.wait_readable(timeout=30)
