"""What an instance holds: its unacked records kept per *run* of offsets, and its
backlog as segments of those runs (issue 21, the supervisor's ceiling).

An instance must keep a copy of every record it was given until that record is acked
(a crash re-dispatches them, oldest first). The data path hands records over in runs
(consecutive messages of one partition, as librdkafka fetched them) and the worker
acks ranges of offsets, so both ends work per run: :meth:`UnackedRecords.add_run`
keeps the run's offset and record lists as they are, and :meth:`UnackedRecords.retire`
drops the runs an ACK range covers in one step each. The Python work of an ACK is per
run it touches, not per record (what a dict of one entry per record cost: an insert
and a pop per message, 0.3 µs of the supervisor's 1.6).

:class:`UnackedRecords` is still a mapping ``(topic index, partition, offset) → record``
in dispatch order for everything that is not the hot path (crash recovery, handover,
reload, moves, the monitor, tests): lookups and iteration cost Python work per record
there, as they did.

Invariants of a :class:`Run`: ``offsets`` strictly increase; every index below ``lo``
is retired; from ``lo`` on, a record is retired when its slot holds ``None``;
``alive`` counts the slots from ``lo`` that are not ``None``. A run with ``alive == 0``
is dead: out of the mapping, and skipped by any backlog segment still naming it.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

__all__ = ["Backlog", "Key", "Run", "Segment", "UnackedRecords"]

Key = tuple[int, int, int]  # topic index, partition, offset


class Run:
    """Records of one partition an instance holds, offsets increasing."""

    __slots__ = ("alive", "lo", "nbytes", "offsets", "partition", "records", "seq", "tidx")

    def __init__(self, tidx: int, partition: int, offsets: list[int],
                 records: list[Any], seq: int, nbytes: int = -1) -> None:
        self.tidx = tidx
        self.partition = partition
        self.offsets = offsets
        self.records = records
        self.seq = seq
        self.lo = 0
        self.alive = len(offsets)
        #: the records' bytes when the run was made (-1: not counted); what queueing
        #: all of it in a backlog adds
        self.nbytes = nbytes


#: A backlog entry: ``[run, start, end]``, the run's slots ``start..end-1`` not yet
#: written to the ring (``start`` moves as the pump writes them).
Segment = list[Any]


def _increasing(offsets: list[int]) -> bool:
    return len(offsets) < 2 or all(map(operator.lt, offsets, offsets[1:]))


class UnackedRecords(MutableMapping[Key, bytes]):
    """An instance's unacked records as runs, in dispatch order (see the module)."""

    def __init__(self) -> None:
        self._runs: dict[int, Run] = {}               # by seq: dispatch order
        self._by_tp: dict[tuple[int, int], list[Run]] = {}
        #: partitions whose runs are not in increasing offset order (a redelivery)
        self._unordered: set[tuple[int, int]] = set()
        self._seq = 0
        self._len = 0

    # ------------------------------------------------------------------ the hot path

    def add_run(self, tidx: int, partition: int, offsets: list[int],
                records: list[Any], ordered: bool = False, nbytes: int = -1) -> list[Run]:
        """Hold ``records`` (their ``offsets``; the lists are kept, not copied;
        ``nbytes``: their total length, when the caller has it). The runs made: one,
        unless ``offsets`` do not increase (``ordered``: the caller knows they do), when
        they are split where they fall back."""
        if not ordered and not _increasing(offsets):
            return self._add_split(tidx, partition, offsets, records)
        seq = self._seq
        self._seq = seq + 1
        run = Run(tidx, partition, offsets, records, seq, nbytes)
        self._runs[seq] = run
        tp = (tidx, partition)
        runs = self._by_tp.get(tp)
        if runs is None:
            self._by_tp[tp] = [run]
        else:
            if runs[-1].offsets[-1] >= offsets[0]:
                self._unordered.add(tp)
            runs.append(run)
        self._len += len(offsets)
        return [run]

    def retire(self, tidx: int, partition: int, first: int, last: int) -> None:
        """An ACK range: every held record of the partition with an offset in
        ``[first, last]`` is done. One step per run it covers whole; a run it covers in
        part takes two bisections and one slice assignment."""
        tp = (tidx, partition)
        runs = self._by_tp.get(tp)
        if runs is None:
            return
        ordered = tp not in self._unordered
        dead = 0
        for run in runs:
            offsets = run.offsets
            low = offsets[run.lo]
            if low > last:
                if ordered:
                    break
                continue
            if offsets[-1] < first:
                continue
            if low >= first and offsets[-1] <= last:
                self._kill(run)
                dead += 1
            else:
                start = run.lo if low >= first else bisect_left(offsets, first, run.lo)
                self._discard(run, start, bisect_right(offsets, last, start))
                if not run.alive:
                    dead += 1
        if dead:
            self._prune(tp, runs)

    # ------------------------------------------------------------------ runs

    def discard(self, run: Run, start: int, end: int) -> None:
        """Retire the run's slots ``start..end-1`` (``start >= run.lo``)."""
        self._discard(run, start, end)
        if not run.alive:
            tp = (run.tidx, run.partition)
            runs = self._by_tp.get(tp)
            if runs is not None:
                self._prune(tp, runs)

    def _discard(self, run: Run, start: int, end: int) -> None:
        """:meth:`discard`, leaving a dead run in its partition's list (the caller
        prunes it: :meth:`retire` walks that list)."""
        if end <= start or not run.alive:
            return
        records = run.records
        if start == run.lo and run.alive == len(records) - start:
            gone = end - start                 # no holes: nothing to count
        else:
            gone = (end - start) - records[start:end].count(None)
            if start > run.lo:                 # a hole in the middle: mark it
                records[start:end] = [None] * (end - start)
        run.alive -= gone
        self._len -= gone
        if not run.alive:
            self._kill(run)
            return
        if start == run.lo:                    # the front moved: skip older holes
            lo = end
            while records[lo] is None:
                lo += 1
            run.lo = lo

    def _kill(self, run: Run) -> None:
        self._len -= run.alive
        run.alive = 0
        del self._runs[run.seq]

    def _prune(self, tp: tuple[int, int], runs: list[Run]) -> None:
        front = 0                              # acks retire the oldest runs first
        while front < len(runs) and not runs[front].alive:
            front += 1
        del runs[:front]
        if any(not run.alive for run in runs):
            runs[:] = [run for run in runs if run.alive]
        if not runs:
            del self._by_tp[tp]
            self._unordered.discard(tp)

    def _add_split(self, tidx: int, partition: int, offsets: list[int],
                   records: list[Any]) -> list[Run]:
        made: list[Run] = []
        begin = 0
        for i in range(1, len(offsets) + 1):
            if i == len(offsets) or offsets[i] <= offsets[i - 1]:
                made += self.add_run(tidx, partition, offsets[begin:i], records[begin:i],
                                     True)
                begin = i
        return made

    def runs(self) -> list[Run]:
        """The live runs in dispatch order."""
        return list(self._runs.values())

    def holds(self, tidx: int, partition: int) -> bool:
        """Whether any record of the partition is held (a move waits for none)."""
        return (tidx, partition) in self._by_tp

    def forget(self, tidx: int, partition: int) -> None:
        """Drop every record of the partition (revoked)."""
        runs = self._by_tp.pop((tidx, partition), None)
        self._unordered.discard((tidx, partition))
        for run in runs or ():
            self._kill(run)

    def locate(self, key: Key) -> tuple[Run, int] | None:
        """The live run and slot holding ``key``, if held."""
        runs = self._by_tp.get((key[0], key[1]))
        offset = key[2]
        for run in runs or ():
            offsets = run.offsets
            if offsets[run.lo] <= offset <= offsets[-1]:
                i = bisect_left(offsets, offset, run.lo)
                if offsets[i] == offset and run.records[i] is not None:
                    return run, i
        return None

    # ------------------------------------------------------------------ the mapping

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Key]:
        for run in list(self._runs.values()):
            tidx, partition, records = run.tidx, run.partition, run.records
            for i in range(run.lo, len(records)):
                if records[i] is not None:
                    yield (tidx, partition, run.offsets[i])

    def items(self) -> Iterator[tuple[Key, bytes]]:  # type: ignore[override]
        for run in list(self._runs.values()):
            tidx, partition, records = run.tidx, run.partition, run.records
            for i in range(run.lo, len(records)):
                record = records[i]
                if record is not None:
                    yield (tidx, partition, run.offsets[i]), record

    def values(self) -> Iterator[bytes]:  # type: ignore[override]
        return (record for _key, record in self.items())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 3 and self.locate(key) is not None

    def __getitem__(self, key: Key) -> bytes:
        found = self.locate(key)
        if found is None:
            raise KeyError(key)
        record = found[0].records[found[1]]
        assert record is not None
        return record

    def __setitem__(self, key: Key, record: bytes) -> None:
        found = self.locate(key)
        if found is not None:
            found[0].records[found[1]] = record
        else:
            self.add_run(key[0], key[1], [key[2]], [record], True)

    def __delitem__(self, key: Key) -> None:
        found = self.locate(key)
        if found is None:
            raise KeyError(key)
        self.discard(found[0], found[1], found[1] + 1)

    def update(self, pairs: Any = (), /, **_: Any) -> None:
        """``(key, record)`` pairs (or a mapping), consecutive ones of a partition with
        increasing offsets kept as one run (a move's or a test's records)."""
        items = pairs.items() if hasattr(pairs, "items") else pairs
        group: list[tuple[Key, bytes]] = []
        for key, record in items:
            if group and (group[-1][0][:2] != key[:2] or group[-1][0][2] >= key[2]):
                self._add_group(group)
                group = []
            found = self.locate(key) if self._len else None
            if found is not None:
                found[0].records[found[1]] = record
                continue
            group.append((key, record))
        if group:
            self._add_group(group)

    def _add_group(self, group: list[tuple[Key, bytes]]) -> None:
        tidx, partition, _ = group[0][0]
        self.add_run(tidx, partition, [key[2] for key, _ in group],
                     [record for _, record in group], True)

    def clear(self) -> None:
        self._runs.clear()
        self._by_tp.clear()
        self._unordered.clear()
        self._len = 0


class Backlog:
    """An instance's records not yet in its ring (its *backlog*), oldest first, as
    segments of its :class:`UnackedRecords` runs: a record retired meanwhile (revoked,
    poisoned) is seen as retired here too, there is no second copy to keep in step.

    ``len`` counts slots: it may over-count records retired meanwhile, never under-count
    (exact again after :meth:`drop_partitions` or once empty)."""

    __slots__ = ("_count", "_segments")

    def __init__(self, segments: Iterable[Segment] = ()) -> None:
        self._segments: deque[Segment] = deque(segments)
        self._count = sum(seg[2] - seg[1] for seg in self._segments)

    @classmethod
    def of(cls, unacked: UnackedRecords) -> Backlog:
        """Every record ``unacked`` holds, in dispatch order (a crash re-queues them)."""
        return cls([run, run.lo, len(run.records)] for run in unacked.runs())

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[Key]:
        """The keys of the records waiting, oldest first."""
        for run, start, end in list(self._segments):
            records = run.records
            for i in range(max(start, run.lo), end):
                if records[i] is not None:
                    yield (run.tidx, run.partition, run.offsets[i])

    def add(self, run: Run, start: int, end: int) -> None:
        if end > start:
            self._segments.append([run, start, end])
            self._count += end - start

    def segments(self) -> deque[Segment]:
        """The segments, oldest first (the pump writes from the front)."""
        return self._segments

    def consumed(self, seg: Segment, upto: int) -> None:
        """The front segment ``seg`` was taken up to slot ``upto`` (written or dead)."""
        self._count -= upto - seg[1]
        if upto >= seg[2]:
            self._segments.popleft()
            if not self._segments:
                self._count = 0
        else:
            seg[1] = upto

    def peek(self, n: int) -> tuple[list[Key], list[bytes]]:
        """The first ``n`` live records' keys and bytes (a recovery window)."""
        keys: list[Key] = []
        records: list[bytes] = []
        for run, start, end in self._segments:
            if not run.alive:
                continue
            for i in range(max(start, run.lo), end):
                record = run.records[i]
                if record is not None:
                    keys.append((run.tidx, run.partition, run.offsets[i]))
                    records.append(record)
                    if len(keys) == n:
                        return keys, records
        return keys, records

    def drop(self, n: int) -> None:
        """Take the first ``n`` live records off the front (written by a window)."""
        segments = self._segments
        while segments and n > 0:
            seg = segments[0]
            run, start, end = seg
            i = max(start, run.lo) if run.alive else end
            while i < end and n > 0:
                if run.records[i] is not None:
                    n -= 1
                i += 1
            self.consumed(seg, i)
        while segments and not segments[0][0].alive:
            self.consumed(segments[0], segments[0][2])

    def drop_partitions(self, partitions: set[tuple[int, int]],
                        unacked: UnackedRecords) -> None:
        """Revoked partitions: their waiting records leave the backlog and ``unacked``."""
        kept: deque[Segment] = deque()
        for seg in self._segments:
            run, start, end = seg
            if (run.tidx, run.partition) in partitions:
                unacked.discard(run, max(start, run.lo), end)
            else:
                kept.append(seg)
        self._segments = kept
        self._count = sum(seg[2] - seg[1] for seg in kept)
