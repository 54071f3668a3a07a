"""A full memory barrier (StoreLoad included) from pure Python, for the ring's doorbells.

The doorbell protocol is Dekker's pattern: each side stores its own flag or index, then
loads the other side's. x86-64 keeps stores in order and loads in order, but lets a load
run ahead of an earlier store to another address (the store buffer), so without a full
barrier both sides can miss each other and a wake-up is lost. Only a locked instruction
or ``mfence`` forbids that.

CPython has no fence primitive, but a non-blocking acquire of a free ``_thread`` lock is
``sem_trywait``, whose compare-and-swap is a ``lock cmpxchg`` on x86-64; releasing it is
another. About 100 ns, paid once per batch and only where a doorbell might be rung. On a
weaker memory model (ARM, POWER) this module is the place for a small C extension calling
``atomic_thread_fence(memory_order_seq_cst)``, and the ring's index stores and loads would
need release/acquire order as well (see ``supervisor/transport/ring.py``).
"""

from __future__ import annotations

import _thread

__all__ = ["full_fence"]

_lock = _thread.allocate_lock()
_acquire = _lock.acquire
_release = _lock.release


def full_fence() -> None:
    """Order every earlier store of this thread before every later load (x86-64)."""
    _acquire(False)
    _release()
