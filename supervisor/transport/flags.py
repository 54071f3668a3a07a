"""One page of byte flags in shared memory: the supervisor sets them, instances read.

For state every process must see *at once* and that is not part of the record stream:
a record on an instance's inbound ring is read only when the instance reads its ring,
which it stops doing while it holds ``max_in_flight`` records, and behind everything
queued ahead of it. A flag is seen by the next load of the byte. The first user is the
channels' flow control (``supervisor/daemon/channelflow.py``): flag *i* set means
"channel *i* is full, its senders wait".

An anonymous ``memfd`` (as the rings): it goes with the processes that hold it, so
nothing is left in ``/dev/shm`` after a ``kill -9``. Each flag is one byte written by
one process (the supervisor) and only read by the others: no lock or atomic needed,
a reader that sees the old value for a moment polls again.
"""

from __future__ import annotations

import mmap
import os

__all__ = ["FLAGS_FD_ENV", "FLAG_COUNT", "SharedFlags"]

#: flags per page (one byte each)
FLAG_COUNT = mmap.PAGESIZE
#: the environment variable naming the flags' fd in a zygote and the instances it forks
FLAGS_FD_ENV = "AGENTD_FLAGS_FD"


class SharedFlags:
    """:data:`FLAG_COUNT` byte flags behind a memfd, all clear at first."""

    def __init__(self, fd: int, writable: bool) -> None:
        self.fd = fd
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self._map: mmap.mmap | None = mmap.mmap(fd, FLAG_COUNT, access=access)

    @classmethod
    def create(cls) -> SharedFlags:
        """New flags, writable by this process (the supervisor)."""
        fd = os.memfd_create("agentd-flags", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, FLAG_COUNT)
            return cls(fd, writable=True)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd: int) -> SharedFlags:
        """The flags behind ``fd`` (received over SCM_RIGHTS), read-only; owns ``fd``."""
        os.set_inheritable(fd, False)
        return cls(fd, writable=False)

    def __getitem__(self, index: int) -> bool:
        assert self._map is not None
        return self._map[index] != 0

    def set(self, index: int, on: bool) -> None:
        assert self._map is not None
        self._map[index] = 1 if on else 0

    def close(self) -> None:
        """Unmap and close the fd; idempotent."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
