"""Exactly once, the daemon's side: every instance holds the consumer's current group
metadata, and the daemon's consumer reads only committed records.

Under ``processing_guarantee = "exactly_once"`` the instances commit their partitions'
offsets inside their own transactions (``supervisor/instance/transactions.py``), with
the member id and generation of the daemon's consumer, so the group coordinator fences
an instance of an old generation (KIP-447). The metadata changes at every rebalance:
this part sends it to each instance whenever it changed or the instance is new, as a
``GROUP`` control record (pumped before any record of the new assignment). The daemon
itself then commits no offsets.
"""

from __future__ import annotations

import time
from typing import Any

from supervisor.daemon.fleet import Fleet
from supervisor.transport import wire

__all__ = ["CONSUMER_SETTINGS", "GroupFeed"]

#: The daemon's consumer under exactly once: aborted transactions' records are skipped.
CONSUMER_SETTINGS = {"isolation.level": "read_committed"}
CHECK_EVERY = 0.05


class GroupFeed:
    """Keeps every running instance's copy of the group metadata current."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.sent: dict[str, tuple[int | None, bytes]] = {}  # label → (pid, metadata)
        self.next_check = 0.0

    def tick(self, consumer: Any, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now < self.next_check or consumer is None:
            return
        self.next_check = now + CHECK_EVERY
        metadata: bytes = consumer.consumer_group_metadata()
        for inst in self.fleet.instances:
            if not inst.running:
                continue
            if self.sent.get(inst.label) != (inst.pid, metadata):
                inst.queue_control(wire.encode_group(metadata))
                self.sent[inst.label] = (inst.pid, metadata)

    def rebalanced(self, consumer: Any) -> None:
        """Called from the rebalance callbacks: send the new generation at once."""
        self.tick(consumer, now=self.next_check)
