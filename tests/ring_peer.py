"""The far side of a ring in a fresh interpreter: it inherits only a socket, not the ring.

Run as ``python ring_peer.py MODE SOCKET_FD [COUNT]``. The ring's fds arrive over the
socket with SCM_RIGHTS, as they will reach the exec'd zygote. Modes:

- ``read COUNT``: read and verify COUNT records (``RECORD_HEADER`` sequence number and
  CRC-32 of the payload), pausing now and then so the writer must sleep on a full ring;
  then report ``{"received", "errors", "sleeps", "timeouts"}`` as one JSON line.
- ``hold``: say ``ready`` and sleep without touching the ring, until killed.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
import zlib

from supervisor.transport.fdpass import receive_ring

RECORD_HEADER = struct.Struct("<II")   # sequence number, CRC-32 of the payload
WAIT_TIMEOUT = 10.0
PAUSE_EVERY = 97                       # reads between pauses that let the ring fill up


def read_and_verify(sock: socket.socket, count: int) -> None:
    ring = receive_ring(sock)
    ring.watch_peer(os.getppid())
    unpack, crc32 = RECORD_HEADER.unpack_from, zlib.crc32
    expected = received = reads = 0
    errors: list[str] = []
    while received < count:
        views = ring.read_many(512)
        if not views:
            ring.wait_readable(WAIT_TIMEOUT)
            continue
        for view in views:
            serial, checksum = unpack(view)
            if (serial != expected or crc32(view[8:]) != checksum) and len(errors) < 10:
                errors.append(f"record {expected}: serial {serial}, crc mismatch "
                              f"{crc32(view[8:]) != checksum}")
            expected += 1
        received += len(views)
        del views, view
        ring.release()
        reads += 1
        if reads % PAUSE_EVERY == 0:
            time.sleep(0.002)
    report = {"received": received, "errors": errors, "sleeps": ring.sleeps,
              "timeouts": ring.timeouts}
    ring.close()
    sock.sendall(json.dumps(report).encode() + b"\n")


def hold(sock: socket.socket) -> None:
    ring = receive_ring(sock)
    sock.sendall(b"ready\n")
    time.sleep(3600)
    ring.close()


def main() -> None:
    mode, sock_fd = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(fileno=sock_fd)
    if mode == "read":
        read_and_verify(sock, int(sys.argv[3]))
    elif mode == "hold":
        hold(sock)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
