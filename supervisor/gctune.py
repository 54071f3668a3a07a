"""The garbage collector's youngest-generation threshold in agentd's processes (why:
see :func:`tune_gc`); the supervisor and each instance set it when they start."""

from __future__ import annotations

import gc

__all__ = ["GC_GEN0_THRESHOLD", "tune_gc"]

#: The cyclic GC's youngest-generation threshold (Python's is 700).
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collect the youngest generation every 10,000 allocations, not every 700.

    Both sides of the data path allocate container objects per message that die
    within their batch, which reference counting frees anyway: in an instance the raw
    record, ticket, event, the decoded dict, the queue's tuple (at 700 a collection
    ran every ~100 messages, ~3 % of the per-message CPU); in the supervisor the
    confluent-kafka Messages of a fetch, 2,000 at a time (three collections per
    batch, each walking the batch's Messages: 0.15-0.2 µs of its ~0.6 µs per message
    on the consume thread, issue 21). The older generations keep their thresholds;
    the supervisor freezes its start-up heap and the zygote its own out of collection.
    """
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0:  # 0: collection disabled by the agent's own code; leave it so
        gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), gen1, gen2)
