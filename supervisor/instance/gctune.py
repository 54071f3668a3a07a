"""The instance process's garbage collector settings (why: see :func:`tune_gc`)."""

from __future__ import annotations

import gc

__all__ = ["GC_GEN0_THRESHOLD", "tune_gc"]

#: The cyclic GC's youngest-generation threshold in an instance (Python's is 700).
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collect the youngest generation every 10,000 allocations, not every 700.

    Every message allocates a handful of container objects (raw record, ticket,
    event, the decoded dict, the queue's tuple) that die within the batch; at 700 a
    collection ran every ~100 messages and cost ~3 % of the per-message CPU, for
    garbage that reference counting frees anyway. The older generations keep their
    thresholds, and the zygote's heap is frozen out of collection (zygote.py).
    """
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0:  # 0: collection disabled by the agent's own code; leave it so
        gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), gen1, gen2)
