"""Changelog rows and their marks: the header a write carries, and applying rows to a shard.

Every changelog row agentd writes carries the *mark* of its key's last write in a
header (source topic, source offset, index of the write within that record). Applying
the changelog to a shard (an instance's recovery, a standby copy kept by the table
keeper) uses it to skip rows the shard wrote itself and to store, with the rows, the
marks that keep a redelivered record from being counted twice (docs/tables.md).

**Flushes.** An instance produces a shard's rows once per *flush* (the write-back
cache, :mod:`agentlib.tables.writeback`): the latest value of each key written since
the last flush, in no order of marks. So a prefix of a flush is not a consistent cut
of the shard (a row of it may hold a write whose record's other writes are in rows
not delivered), and a replay must apply a flush whole or not at all. The *last* row
of a flush carries the plain mark (``topic \x1f offset \x1f index``), which is the
flush's latest write, and one ``agentd-upto`` header per other source topic written
in the flush (that topic's latest mark). Every other row is *partial*: its header is
``\x1f`` and the last row's mark, naming its flush (one header value for the whole
flush: no formatting per row). A replay holds partial rows back until their flush's
last row arrives, then applies them with it; partial rows of a flush whose last row
never came (its instance died mid-flush: none of its records were acked) are dropped.
A partial row is skipped where the shard's mark is not older than its flush's last
row: a shard stores whole flushes (its owner's, or the changelog's when replayed), so
such a shard holds the whole flush. Rows written before flushes (one row per write)
have plain marks: each is a flush of one row.
"""

from __future__ import annotations

from typing import Any

from agentlib.tables.shards import Mark, Shard

__all__ = ["MARK_HEADER", "UPTO_HEADER", "Recovery", "ReplayState", "apply_messages",
           "decode_mark", "encode_mark"]

#: The changelog header carrying the mark of the write: ``topic \x1f offset \x1f index``
#: (a partial row of a flush: ``\x1f`` and the mark of its flush's last row).
MARK_HEADER = "agentd-mark"
#: On a flush's last row: the latest mark of another source topic written in the flush.
UPTO_HEADER = "agentd-upto"
_SEP = "\x1f"
_SEP_BYTES = _SEP.encode()
#: librdkafka's "reached the end of the partition" event (``KafkaError._PARTITION_EOF``).
_PARTITION_EOF = -191


def encode_mark(topic: str, mark: Mark) -> bytes:
    """The header value for a write made by ``topic``'s record at ``mark``."""
    return f"{topic}{_SEP}{mark[0]}{_SEP}{mark[1]}".encode()


def decode_mark(data: bytes) -> tuple[str, Mark] | None:
    """``(topic, mark)`` from a header value (a partial row's: its flush's last mark);
    None if it is not one."""
    try:
        topic, offset, index = data.decode().removeprefix(_SEP).split(_SEP)
        return topic, (int(offset), int(index))
    except ValueError:
        return None


class ReplayState:
    """What applying one shard's changelog keeps between batches.

    ``marks``: the shard's mark per raw source topic when first looked at (rows whose
    mark is not newer are skipped). ``partial``: rows of a flush whose last row has not
    been read yet, as ``(its last row's mark, offset, key, value)``. ``dropped``: rows
    of flushes that never finished, dropped (see the module docstring).
    """

    __slots__ = ("dropped", "marks", "partial")

    def __init__(self) -> None:
        self.marks: dict[bytes, Mark | None] = {}
        self.partial: list[tuple[bytes, int, bytes, bytes | None]] = []
        self.dropped = 0

    def drop_unfinished(self) -> int:
        """Drop the partial rows held (the changelog's end came before their flush's
        last row); the number dropped."""
        count = len(self.partial)
        self.dropped += count
        self.partial.clear()
        return count


class Recovery:
    """Counts of one shard's catch-up from its changelog (for logs and status).

    It replays changelog offsets ``start`` up to ``high`` - 1 (the high watermark when
    it began); ``position`` is the last offset read so far.
    """

    __slots__ = ("high", "position", "rows", "seconds", "skipped", "start")

    def __init__(self, start: int = 0, high: int = 0) -> None:
        self.rows = 0
        self.skipped = 0
        self.seconds = 0.0
        self.start = start
        self.high = high
        self.position = start - 1

    @property
    def percent(self) -> float:
        """How much of the offsets to replay is read (100 when there were none)."""
        total = self.high - self.start
        return 100.0 if total <= 0 else 100.0 * (self.position + 1 - self.start) / total


def apply_messages(shard: Shard, messages: list[Any], state: ReplayState,
                   stats: Recovery) -> tuple[int, bool]:
    """Apply changelog ``messages`` (of ``shard``'s partition, in order) to ``shard`` in
    one write batch, skipping rows the shard wrote itself (their mark is not newer than
    the shard's) and holding back a flush's rows until its last row is read. Returns
    the last offset read, and whether the partition's end was reached. Recovery and
    standby copies both apply the changelog this way.

    The changelog offset stored with the batch stops before the first row held back,
    so that a shard closed meanwhile reads the unfinished flush again. A mark is only
    parsed where the shard holds a mark of its source topic (a row may be skipped), on
    partial rows, and on the marks stored with the batch: in a rebuild of an empty
    shard from rows written one per write that is one parse per batch, not per row.
    """
    rows: list[tuple[bytes, bytes | None]] = []
    latest: dict[bytes, bytes] = {}  # source topic → its last mark applied, raw
    held = state.marks
    partial = state.partial
    at_end = False
    position = shard.changelog_offset
    seen_partial, skip_partial = b"", False  # the last partial header, and its verdict
    for message in messages:
        error = message.error()
        if error is not None:
            at_end = at_end or error.code() == _PARTITION_EOF
            continue
        position = message.offset()
        headers = message.headers()
        raw = _mark_header(headers)
        if raw is None:
            rows.append((message.key(), message.value()))
            continue
        if raw[:1] == _SEP_BYTES:  # a partial row: held until its flush's last row
            if raw != seen_partial:
                seen_partial = raw
                skip_partial = _held_already(raw[1:], shard, held)
            if skip_partial:
                stats.skipped += 1  # the shard holds its whole flush
            else:
                partial.append((raw[1:], position, message.key(), message.value()))
            continue
        topic, _, rest = raw.partition(_SEP_BYTES)
        if partial:  # a flush's last row: its held rows go first; others never finished
            for owner, _, key, value in partial:
                if owner == raw:
                    rows.append((key, value))
                else:
                    state.dropped += 1
            partial.clear()
        if len(headers) > 1:
            _note_upto(headers, shard, held, latest)
        if _held_already(raw, shard, held):
            stats.skipped += 1  # the shard has this write (and maybe newer)
            continue
        latest[topic] = rest
        rows.append((message.key(), message.value()))
    stats.rows += len(rows)
    marks = {topic.decode(errors="replace"): mark for topic, rest in latest.items()
             if (mark := _parse_mark(rest)) is not None}
    stored = position if not partial else min(position, partial[0][1] - 1)
    if rows or marks or stored > shard.changelog_offset:
        shard.apply_changelog(rows, marks, stored)
    return position, at_end


def _held_already(raw: bytes, shard: Shard, held: dict[bytes, Mark | None]) -> bool:
    """Whether ``shard`` holds the write of the plain mark ``raw`` (its mark of the
    source topic is not older); ``held`` caches the shard's marks by raw topic."""
    topic, _, rest = raw.partition(_SEP_BYTES)
    if topic in held:
        applied = held[topic]
    else:
        applied = held[topic] = shard.mark(topic.decode(errors="replace"))
    if applied is None:
        return False
    mark = _parse_mark(rest)
    return mark is not None and mark <= applied


def _note_upto(headers: list[tuple[str, bytes]], shard: Shard,
               held: dict[bytes, Mark | None], latest: dict[bytes, bytes]) -> None:
    """A flush's last row: the other source topics' latest marks it carries join
    ``latest`` where they are newer than the shard's."""
    for name, value in headers:
        if name != UPTO_HEADER or value is None:
            continue
        topic, _, rest = value.partition(_SEP_BYTES)
        if topic not in held:
            held[topic] = shard.mark(topic.decode(errors="replace"))
        applied, mark = held[topic], _parse_mark(rest)
        if mark is not None and (applied is None or mark > applied):
            latest[topic] = rest


def _mark_header(headers: list[tuple[str, bytes]] | None) -> bytes | None:
    """The raw ``agentd-mark`` header value among ``headers`` (None if absent)."""
    for name, value in headers or ():
        if name == MARK_HEADER and value is not None:
            return value
    return None


def _parse_mark(rest: bytes) -> Mark | None:
    """The mark of a header value's ``offset \x1f index`` part; None if it is not one."""
    offset, _, index = rest.partition(_SEP_BYTES)
    return _int_mark(offset, index)


def _int_mark(offset: bytes, index: bytes) -> Mark | None:
    try:
        return int(offset), int(index)
    except ValueError:
        return None
