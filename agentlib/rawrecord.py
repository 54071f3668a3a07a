"""``RawRecord``: one Kafka message exactly as the supervisor read it, and how to make one.

This is agentlib's ground floor: the worker makes RawRecords, the seam feeds them to
the agent, an :class:`~agentlib.events.Event` points back to its own, and the ticket
that reports it done holds it. Keeping the type here, importing nothing of agentlib,
is what lets those modules stack without an import cycle.

There is one way to build a RawRecord in agentlib and the worker:
:func:`new_raw_record`. The dataclass's own ``__init__`` stays what it is for users,
``dataclasses.replace`` and pickling, and makes the same object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RawRecord", "new_raw_record"]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka message exactly as the supervisor read it (nothing decoded)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def timestamp(self) -> float | None:
        """Faust's ``Message.timestamp``: the Kafka timestamp in seconds."""
        return None if self.timestamp_ms is None else self.timestamp_ms / 1000


class _UnfrozenRawRecord:
    """RawRecord's memory layout without the frozen guard (same slots, same order).

    :func:`new_raw_record` fills one with plain slot stores, then turns it into a
    RawRecord by ``__class__`` assignment, which CPython allows between two classes of
    one layout. Never seen outside that function.
    """

    __slots__ = RawRecord.__slots__


_new_object = object.__new__


def new_raw_record(topic: str, partition: int, offset: int, timestamp_ms: int | None,
                   key: bytes | None, value: bytes | None,
                   headers: tuple[tuple[str, bytes], ...]) -> RawRecord:
    """``RawRecord(topic, partition, offset, timestamp_ms, key, value, headers)``, cheaper.

    The worker makes one per message: the frozen dataclass's ``__init__`` sets each
    field with ``object.__setattr__`` by name, seven calls; this is seven slot stores
    and a class change. The result is a RawRecord in every respect (type, equality,
    hash, repr, pickling, ``dataclasses.replace``: see ``tests/test_agentlib_seam.py``).
    """
    record: Any = _new_object(_UnfrozenRawRecord)
    record.topic = topic
    record.partition = partition
    record.offset = offset
    record.timestamp_ms = timestamp_ms
    record.key = key
    record.value = value
    record.headers = headers
    record.__class__ = RawRecord
    return record  # type: ignore[no-any-return,unused-ignore]  # (no cast(): a call per record)
