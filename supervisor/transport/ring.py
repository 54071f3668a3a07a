"""One single-producer/single-consumer ring of variable-length records in a memfd.

The supervisor owns two rings per agent instance (records in, acks out). Each lives in an
anonymous ``memfd_create`` file mapped ``MAP_SHARED`` by both processes, with two eventfd
doorbells (``doorbell.py``): data-ready for the reader, space-ready for the writer.
``Ring.fds()`` travel over a Unix socket (``fdpass.py``): the zygote inherits nothing.

Layout of the shared file (all integers little-endian u64)::

    0     magic, layout version, capacity         written once by create()
    128   head      next byte position the writer will fill       (writer-owned)
    256   tail      first byte position the reader still needs     (reader-owned)
    384   reader_sleeping  1 while the reader may sleep on data-ready (reader-owned)
    512   writer_sleeping  1 while the writer may sleep on space-ready (writer-owned)
    4096  data[capacity]   capacity is a power of two, records start 8-byte aligned

Each field sits on its own pair of cache lines (128 B, so the adjacent-line prefetcher
does not pull the peer's field along): the writer storing head never invalidates the
line the reader stores tail into, and the reverse. head and tail are byte positions that
only grow (2**64 bytes is centuries of traffic); ``position & (capacity - 1)`` is the
offset in data. ``head - tail`` is the number of bytes in use, so the ring is empty when
``head == tail`` and full when ``head - tail == capacity``: no slot is kept free because
the positions never wrap.

A record is an 8-byte header holding the payload length, then the payload, padded to a
multiple of 8. A record never straddles the end of data: when it does not fit before the
end, the writer fills the rest with a wrap marker (a header holding ``WRAP``) and starts
again at offset 0. The largest record therefore fits only in an empty ring that starts
at offset 0: ``max_record_size = capacity - 8``.

Memory ordering (the argument, in the manner of folly's ProducerConsumerQueue.h):

* The writer alone stores head, data and writer_sleeping; the reader alone stores tail
  and reader_sleeping. Each side may read the other's index at any time: a stale value
  is only conservative (the writer sees less free space, the reader fewer records).
* Writer: copy the payload and its header, *then* store head. Reader: load head, *then*
  load headers and payloads below it. On x86-64 (TSO) stores become visible in program
  order and loads are not reordered with other loads, so a reader that sees the new head
  sees the bytes written before it. The payload stores are done by one call
  (``runscan.copy_records``: a memcpy per record, compiled or through memoryview
  slices) that returns before head is stored from Python, and the compiler cannot move
  stores across that opaque call. The copies themselves may use ``rep movsb`` or
  non-temporal stores, which are weakly ordered among themselves, but x86-64 completes a
  string operation's stores before later stores, and glibc's memcpy ends its
  non-temporal path with ``sfence``. Index stores go through a memoryview cast to
  'Q' at 8-byte aligned offsets: one aligned 8-byte mov, which is atomic, so the peer
  never sees a torn index.
* Reader: finish with the views, *then* store tail; x86-64 never lets a later store pass
  an earlier load, so the writer cannot overwrite bytes the reader is still loading.
* On a weaker model (ARM, POWER) the head/tail stores would need release order and the
  peer's loads acquire order (``atomic_store_explicit(..., memory_order_release)`` from a
  small C extension); plain Python stores give no such guarantee there.
* Doorbells are Dekker's pattern: the sleeper stores its flag then loads the peer's
  index; the waker stores its index then loads the flag. x86-64 *does* reorder a store
  with a later load from another address (the store buffer), which would let both
  miss each other and lose the wake-up. ``fence.py`` puts a locked instruction between
  the store and the load on both sides, which drains the store buffer. Even a lost
  wake-up could only cost the waiter's timeout, never a hang.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable, Sequence
from time import monotonic

from supervisor.transport import runscan
from supervisor.transport.doorbell import Doorbell, PeerGone, PeerWatch
from supervisor.transport.fence import full_fence

__all__ = ["PeerGone", "RecordTooLarge", "Ring"]

MAGIC = int.from_bytes(b"agdring1", "little")
LAYOUT_VERSION = 1
HEADER_BYTES = 4096
WRAP = (1 << 64) - 1
# Slots (u64 indices) of the control fields in the shared header; see the module layout.
_MAGIC, _VERSION, _CAPACITY, _HEAD, _TAIL, _READER_SLEEPING, _WRITER_SLEEPING = \
    0, 1, 2, 16, 32, 48, 64


class RecordTooLarge(ValueError):
    """A record larger than ``max_record_size``: it can never fit, so waiting is wrong."""


class Ring:
    """One SPSC ring; one process writes, the other reads (each uses one half of the API).
    Not thread-safe: one thread per side. Use :meth:`create` in the owning process and
    :meth:`attach` with the received fds in the peer."""

    def __init__(self, memfd: int, data_bell: Doorbell, space_bell: Doorbell) -> None:
        """Map ``memfd`` and adopt the three fds (on success only; closed by close()).

        The mmap object keeps a private duplicate of ``memfd`` (released when the map is
        closed), so a ring holds four fds, five with a peer watch.
        """
        self._memfd = memfd
        self._data_bell = data_bell
        self._space_bell = space_bell
        self._peer: PeerWatch | None = None
        size = os.fstat(memfd).st_size
        if size < HEADER_BYTES + 64:
            raise ValueError(f"fd is not an agentd ring ({size} bytes)")
        mapping = mmap.mmap(memfd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._map: mmap.mmap | None = mapping
        self._whole = memoryview(mapping)
        self._ctl = self._whole[:HEADER_BYTES].cast("Q")
        self._data = self._whole[HEADER_BYTES:]
        self._words = self._data.cast("Q")
        ctl = self._ctl
        capacity = size - HEADER_BYTES
        if (ctl[_MAGIC] != MAGIC or ctl[_VERSION] != LAYOUT_VERSION
                or ctl[_CAPACITY] != capacity or capacity & (capacity - 1)):
            self._release_mapping()
            raise ValueError("fd is not an agentd ring (bad magic or layout version)")
        self.capacity: int = capacity
        self.max_record_size: int = self.capacity - 8
        self._mask = self.capacity - 1
        # The writer's own head and a cached copy of the reader's tail (refreshed only
        # when the cached value says the ring is full, as folly's queue does).
        self._head: int = ctl[_HEAD]
        self._tail_seen: int = ctl[_TAIL]
        # The reader's position after the last read_many (published by release()).
        self._read_pos: int = ctl[_TAIL]
        #: Sleeps on a doorbell, and waits that reached their deadline instead of being
        #: rung. A busy peer that keeps up should leave ``timeouts`` at 0: anything else
        #: is a stuck peer (or a lost wake-up, which the protocol exists to prevent).
        self.sleeps = 0
        self.timeouts = 0

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, capacity: int) -> Ring:
        """A new ring with ``capacity`` data bytes (a power of two, at least 64)."""
        if capacity < 64 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 64, not {capacity}")
        memfd = os.memfd_create("agentd-ring", os.MFD_CLOEXEC)
        try:
            os.ftruncate(memfd, HEADER_BYTES + capacity)
            header = (MAGIC.to_bytes(8, "little") + LAYOUT_VERSION.to_bytes(8, "little")
                      + capacity.to_bytes(8, "little"))
            os.pwrite(memfd, header, 0)
            data_bell, space_bell = Doorbell.create(), Doorbell.create()
        except BaseException:
            os.close(memfd)
            raise
        return cls(memfd, data_bell, space_bell)

    @classmethod
    def attach(cls, fds: Sequence[int]) -> Ring:
        """The ring behind ``fds`` (from :meth:`fds`, received over SCM_RIGHTS).

        Takes ownership of the fds: :meth:`close` closes them.
        """
        memfd, data_fd, space_fd = fds
        for fd in fds:
            os.set_inheritable(fd, False)
        return cls(memfd, Doorbell(data_fd), Doorbell(space_fd))

    def fds(self) -> list[int]:
        """``[memfd, data-ready eventfd, space-ready eventfd]`` for ``socket.send_fds``."""
        return [self._memfd, self._data_bell.fd, self._space_bell.fd]

    @property
    def reader_fd(self) -> int:
        """The data-ready eventfd, for ``loop.add_reader`` in the reading process."""
        return self._data_bell.fd

    @property
    def writer_fd(self) -> int:
        """The space-ready eventfd, for ``loop.add_reader`` in the writing process."""
        return self._space_bell.fd

    @property
    def peer_fd(self) -> int:
        """The watched peer's pidfd (readable once it exits) for event loops; -1 if none."""
        return self._peer.fd if self._peer is not None else -1

    def watch_peer(self, pid: int) -> None:
        """Make waits raise :class:`PeerGone` once process ``pid`` has exited."""
        if self._peer is not None:
            self._peer.close()
        self._peer = PeerWatch(pid)

    def close(self) -> None:
        """Unmap and close every fd this object owns; idempotent.

        Views from :meth:`read_many` should be dropped first; if some are still alive,
        the mapping (and the mmap object's private fd) go away with the last view.
        """
        self._release_mapping()
        for bell in (self._data_bell, self._space_bell):
            bell.close()
        if self._peer is not None:
            self._peer.close()
            self._peer = None
        if self._memfd >= 0:
            os.close(self._memfd)
            self._memfd = -1

    def _release_mapping(self) -> None:
        for view in (self._words, self._data, self._ctl, self._whole):
            view.release()
        # BufferError: a caller still holds a view; munmap happens when it is collected,
        # so drop our reference to let that happen.
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writer side

    def write_many(self, records: Sequence[bytes | memoryview | bytearray | None],
                   start: int = 0) -> int:
        """Copy ``records[start:]`` in order until one does not fit; return how many
        were taken (``None`` entries are skipped, and count as taken).

        Records are bytes-like with 1-byte items (``bytes``, ``bytearray``, a plain
        memoryview). 0 means the ring is full (would block): back off, or
        ``wait_writable``. A record over ``max_record_size`` stops the batch like a
        full ring; when it is the first one (``records[start]``) :class:`RecordTooLarge`
        is raised at once, so a caller advancing ``start`` by the result meets it on its
        next call. Publishes head once for the whole batch, after every payload is in
        place.
        """
        if type(records) is not list:
            records = list(records)
        return self.write_run(records, start, len(records))[0] - start

    def write_run(self, records: list[bytes | memoryview | bytearray | None], start: int,
                  end: int) -> tuple[int, int]:
        """:meth:`write_many` for ``records[start:end]``: returns the index of the first
        record not taken and the payload bytes copied (what a backlog pays back).

        The copy loop is ``runscan.copy_records``: compiled (one ``memcpy`` per record)
        when built, else the pure-Python loop. It stops at ``stop``, the nearer of the
        reader's tail one lap on and the end of the data area (a record never straddles
        it); the slow path here refreshes tail, wraps, and goes on."""
        mask, capacity = self._mask, self.capacity
        head = self._head
        i, copied = start, 0
        while True:
            stop = min(self._tail_seen + capacity, head - (head & mask) + capacity)
            i, head, nbytes = runscan.copy_records(self._data, self._words, mask, head, stop,
                                                   records, i, end)
            copied += nbytes
            if i >= end:
                break
            length = len(records[i])  # type: ignore[arg-type]  # None never stops it
            head, _tail, fits = self._make_room(head, (length + 15) & ~7)
            if not fits:
                if length > self.max_record_size and i == start:
                    self._publish_head(head)
                    raise RecordTooLarge(
                        f"record of {length} bytes > max {self.max_record_size}")
                break
        self._publish_head(head)
        return i, copied

    def try_write(self, record: bytes | memoryview | bytearray) -> bool:
        """Write one record; False when the ring is full (RecordTooLarge if it never fits)."""
        return self.write_run([record], 0, 1)[0] == 1

    def _make_room(self, head: int, need: int) -> tuple[int, int, bool]:
        """Slow path: refresh tail, wrap if the record cannot fit before the end.

        Returns ``(head, tail, fits)``; head moves past a wrap marker when one was
        written (the caller publishes it, with the record if that fits too).
        """
        capacity = self.capacity
        tail = self._tail_seen = self._ctl[_TAIL]
        if need > capacity:
            return head, tail, False
        room_to_end = capacity - (head & self._mask)
        if need > room_to_end:
            if head + room_to_end - tail > capacity:
                return head, tail, False
            # The marker's 8 bytes always fit: offsets and room_to_end are multiples of 8.
            self._words[(head & self._mask) >> 3] = WRAP
            head += room_to_end
        return head, tail, head + need - tail <= capacity

    def _publish_head(self, head: int) -> None:
        if head == self._head:
            return
        self._head = head
        self._ctl[_HEAD] = head            # after the payload stores: see module docstring
        full_fence()                       # StoreLoad: head visible before reading the flag
        if self._ctl[_READER_SLEEPING]:
            self._data_bell.ring()

    def wait_writable(self, nbytes: int, timeout: float) -> bool:
        """Block until a record of ``nbytes`` fits, or ``timeout`` seconds pass (False).

        Raises :class:`RecordTooLarge` at once for a record that can never fit, and
        :class:`PeerGone` when the watched peer exits while there is no room.
        """
        need = (nbytes + 15) & ~7
        return self._wait(lambda: self.prepare_write_sleep(nbytes), self._space_bell,
                          _WRITER_SLEEPING, lambda: self._advance_to_fit(need), timeout)

    def prepare_write_sleep(self, nbytes: int) -> bool:
        """Announce that the writer will sleep until ``nbytes`` fit; False: it fits now.

        Announce-then-recheck: set writer_sleeping, fence, reload tail; the reader's
        release() rings the space-ready doorbell only when it sees the flag. After True,
        wait for ``writer_fd`` to become readable, then call :meth:`ack_write_doorbell`.
        """
        if nbytes > self.max_record_size:
            raise RecordTooLarge(f"record of {nbytes} bytes > max {self.max_record_size}")
        need = (nbytes + 15) & ~7
        if self._advance_to_fit(need):
            return False
        ctl = self._ctl
        ctl[_WRITER_SLEEPING] = 1
        full_fence()                       # StoreLoad: flag visible before reading tail
        if self._advance_to_fit(need):
            ctl[_WRITER_SLEEPING] = 0
            return False
        return True

    def ack_write_doorbell(self) -> None:
        """After an event-loop wake-up: clear the writer's announcement, drain the fd."""
        self._ctl[_WRITER_SLEEPING] = 0
        self._space_bell.drain()

    def _advance_to_fit(self, need: int) -> bool:
        """Refresh tail, write (and publish) a wrap marker if due; True if ``need`` fits."""
        head, _tail, fits = self._make_room(self._head, need)
        self._publish_head(head)           # a wrap marker lets the reader skip ahead
        return fits

    # ------------------------------------------------------------------ reader side

    def read_many(self, max_records: int) -> list[memoryview]:
        """Up to ``max_records`` records as views into the ring, oldest first.

        The views stay valid until :meth:`release`, which lets the writer reuse the
        space; copy (``bytes(view)``) anything needed longer. Call ``release()`` before
        the next ``read_many``. An empty list means the ring is empty.
        """
        data, words, mask = self._data, self._words, self._mask
        pos = self._read_pos
        head = self._ctl[_HEAD]            # acquire: everything below head is written
        views: list[memoryview] = []
        append = views.append
        for _ in range(max_records):
            if pos >= head:
                break
            offset = pos & mask
            length = words[offset >> 3]
            if length == WRAP:             # the rest of the lap is padding: go to offset 0
                pos += self.capacity - offset
                if pos >= head:
                    break
                offset = 0
                length = words[0]          # never WRAP: any record fits a whole lap
            offset += 8
            append(data[offset:offset + length])
            pos += (length + 15) & ~7
        self._read_pos = pos
        if not views and pos != self._ctl[_TAIL]:
            self.release()                 # only wrap markers: free them without a call
        return views

    def release(self) -> None:
        """Hand the space of the last ``read_many`` back to the writer (publish tail)."""
        ctl = self._ctl
        if ctl[_TAIL] == self._read_pos:
            return
        ctl[_TAIL] = self._read_pos        # after the reader's loads: see module docstring
        full_fence()                       # StoreLoad: tail visible before reading the flag
        if ctl[_WRITER_SLEEPING]:
            self._space_bell.ring()

    def readable(self) -> bool:
        """True when records past the last ``read_many`` are waiting."""
        return self._ctl[_HEAD] != self._read_pos

    def wait_readable(self, timeout: float) -> bool:
        """Block until a record is waiting, or ``timeout`` seconds pass (False).

        Raises :class:`PeerGone` when the watched peer exits and the ring is empty
        (records the peer wrote before dying are still delivered first).
        """
        return self._wait(self.prepare_read_sleep, self._data_bell, _READER_SLEEPING,
                          self.readable, timeout)

    def prepare_read_sleep(self) -> bool:
        """Announce that the reader will sleep; False means data arrived, do not sleep.

        After True, wait for ``reader_fd`` to become readable, then call
        :meth:`ack_doorbell`.
        """
        ctl = self._ctl
        if ctl[_HEAD] != self._read_pos:
            return False
        ctl[_READER_SLEEPING] = 1
        full_fence()                       # StoreLoad: flag visible before reading head
        if ctl[_HEAD] != self._read_pos:
            ctl[_READER_SLEEPING] = 0
            return False
        return True

    def ack_doorbell(self) -> None:
        """After an event-loop wake-up: clear the sleep announcement, drain the eventfd."""
        self._ctl[_READER_SLEEPING] = 0
        self._data_bell.drain()

    # ------------------------------------------------------------------ sleeping

    def _wait(self, prepare_sleep: Callable[[], bool], bell: Doorbell, flag: int,
              ready: Callable[[], bool], timeout: float) -> bool:
        """Announce, re-check, sleep on ``bell`` and the peer's pidfd; repeat until ready.

        Every wake-up is followed by a re-check: a ring may be stale (meant for an earlier
        sleep), and a dead peer may have left records or room behind.
        """
        deadline = monotonic() + timeout
        while True:
            if not prepare_sleep():
                return True
            remaining = deadline - monotonic()
            rung = gone = False
            if remaining > 0:
                self.sleeps += 1
                rung, gone = bell.sleep(self.peer_fd, remaining)
            self._ctl[flag] = 0
            if rung:
                continue
            if not gone:
                self.timeouts += 1         # counted even if ready now: a lost wake-up
            if ready():
                return True
            if gone:
                pid = self._peer.pid if self._peer is not None else -1
                raise PeerGone(f"peer process {pid} exited")
            return False
