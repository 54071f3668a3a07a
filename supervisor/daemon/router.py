"""Which instance of an agent gets a message, by the agent's ``ordering`` mode.

- ``partition``: every message of a (topic, partition) goes to one instance, so the
  partition's order holds. Assigned partitions are spread evenly (counts differ by at
  most one) and the spread is *sticky*: when the assignment or the instance count
  changes, only the partitions that must move do, and ``rebalance`` says which, so the
  daemon can drain the old instance before the new one gets them.
- ``key``: ``zlib.crc32(key) % instances``. Stable across processes and restarts (unlike
  ``hash()``, salted per process), computed in C. Kafka's murmur2 would only matter if
  the result had to agree with a Kafka partitioner; here it picks an instance, and the
  same key lands on the same instance whatever topic it comes from, which keeps
  per-key order and co-locates a key's state.
- ``none``: round-robin over instances that are not blocked (their ring is full);
  Faust's ``concurrency > 1`` semantics.
- A ``None`` key in ``key`` mode has no order to keep: round-robin like ``none``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

from supervisor.config.values import ORDERINGS

TopicPartition = tuple[str, int]


class Router:
    """Instance choice for one agent. Single-threaded, owned by the daemon loop."""

    def __init__(self, ordering: str, instances: int) -> None:
        if ordering not in ORDERINGS:
            raise ValueError(f"unknown ordering {ordering!r}")
        if instances < 1:
            raise ValueError("an agent needs at least one instance")
        self.ordering = ordering
        self.instances = instances
        self._owner: dict[TopicPartition, int] = {}
        self._blocked: set[int] = set()
        self._next = 0

    # ---- per message ----

    def route(self, tp: TopicPartition, key: bytes | None) -> int:
        """The instance index (0-based) for one message of ``tp`` with ``key``."""
        if self.ordering == "partition":
            owner = self._owner.get(tp)
            return owner if owner is not None else self._adopt(tp)
        if self.ordering == "key" and key is not None:
            return zlib.crc32(key) % self.instances
        return self._round_robin()

    def route_batch(self, tp: TopicPartition, keys: Sequence[bytes | None]) -> list[int]:
        """Instance indexes for consecutive messages of one partition, in order."""
        if self.ordering == "partition":
            return [self.route(tp, None)] * len(keys)
        if self.ordering == "key":
            n = self.instances
            crc = zlib.crc32
            return [crc(k) % n if k is not None else self._round_robin() for k in keys]
        return [self._round_robin() for _ in keys]

    # ---- backpressure (none / key-None) ----

    def set_blocked(self, instance: int, blocked: bool) -> None:
        """Round-robin skips a blocked instance (full ring) while another is free."""
        if blocked:
            self._blocked.add(instance)
        else:
            self._blocked.discard(instance)

    def _round_robin(self) -> int:
        n = self.instances
        for _ in range(n):
            choice = self._next % n
            self._next = choice + 1
            if choice not in self._blocked:
                return choice
        choice = self._next % n  # all blocked: the caller's ring write waits/pauses
        self._next = choice + 1
        return choice

    # ---- partition assignment ----

    def owner(self, tp: TopicPartition) -> int | None:
        """The instance that owns ``tp`` in ``partition`` mode, None if unassigned."""
        return self._owner.get(tp)

    def partitions_of(self, instance: int) -> list[TopicPartition]:
        """The partitions feeding ``instance`` (what to pause when its ring is full)."""
        return sorted(tp for tp, owner in self._owner.items() if owner == instance)

    def assign(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Add newly assigned partitions; returns moves ``{tp: new instance}`` of
        partitions that already had an owner (rebalancing to keep counts even)."""
        for tp in sorted(set(partitions) - self._owner.keys()):
            self._owner[tp] = self._least_loaded()
        return self._even_out()

    def revoke(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Drop revoked partitions; returns moves of the remaining ones (see ``assign``)."""
        for tp in partitions:
            self._owner.pop(tp, None)
        return self._even_out()

    def set_instances(self, instances: int) -> dict[TopicPartition, int]:
        """Change the instance count (reload); returns every partition that moved."""
        if instances < 1:
            raise ValueError("an agent needs at least one instance")
        self.instances = instances
        self._blocked = {i for i in self._blocked if i < instances}
        orphans = sorted(tp for tp, owner in self._owner.items() if owner >= instances)
        for tp in orphans:
            del self._owner[tp]
        moved = {}
        for tp in orphans:
            moved[tp] = self._owner[tp] = self._least_loaded()
        moved.update(self._even_out())
        return moved

    def _adopt(self, tp: TopicPartition) -> int:
        """A message for a partition the daemon did not announce: own it, least loaded."""
        owner = self._owner[tp] = self._least_loaded()
        return owner

    def _loads(self) -> list[int]:
        counts = [0] * self.instances
        for owner in self._owner.values():
            counts[owner] += 1
        return counts

    def _least_loaded(self) -> int:
        counts = self._loads()
        return counts.index(min(counts))

    def _even_out(self) -> dict[TopicPartition, int]:
        """Move one partition at a time from the fullest to the emptiest instance until
        the counts differ by at most one; deterministic (highest tp moves first)."""
        moved: dict[TopicPartition, int] = {}
        counts = self._loads()
        while max(counts) - min(counts) > 1:
            source, target = counts.index(max(counts)), counts.index(min(counts))
            tp = max(tp for tp, owner in self._owner.items() if owner == source)
            self._owner[tp] = target
            counts[source] -= 1
            counts[target] += 1
            moved[tp] = target
        return moved
