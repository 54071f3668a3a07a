"""Changelog rows and their marks: the header a write carries, and applying rows to a shard.

Every changelog row agentd writes carries the *mark* of the write in a header (source
topic, source offset, index of the write within that record). Applying the changelog
to a shard (an instance's recovery, a standby copy kept by the table keeper) uses it
to skip rows the shard wrote itself and to store, with the rows, the marks that keep
a redelivered record from being counted twice (docs/tables.md).
"""

from __future__ import annotations

from typing import Any

from agentlib.tables.shards import Mark, Shard

__all__ = ["MARK_HEADER", "Recovery", "apply_messages", "decode_mark", "encode_mark"]

#: The changelog header carrying the mark of the write: ``topic \x1f offset \x1f index``.
MARK_HEADER = "agentd-mark"
_SEP = "\x1f"
_SEP_BYTES = _SEP.encode()
#: librdkafka's "reached the end of the partition" event (``KafkaError._PARTITION_EOF``).
_PARTITION_EOF = -191


def encode_mark(topic: str, mark: Mark) -> bytes:
    """The header value for a write made by ``topic``'s record at ``mark``."""
    return f"{topic}{_SEP}{mark[0]}{_SEP}{mark[1]}".encode()


def decode_mark(data: bytes) -> tuple[str, Mark] | None:
    """``(topic, mark)`` from a header value; None if it is not one."""
    try:
        topic, offset, index = data.decode().split(_SEP)
        return topic, (int(offset), int(index))
    except ValueError:
        return None


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


def apply_messages(shard: Shard, messages: list[Any], held: dict[bytes, Mark | None],
                   stats: Recovery) -> tuple[int, bool]:
    """Apply changelog ``messages`` (of ``shard``'s partition, in order) to ``shard`` in
    one write batch, skipping rows the shard wrote itself (their mark is not newer than
    the shard's; ``held`` caches the shard's marks by raw source topic). Returns the
    shard's changelog offset after them, and whether the partition's end was reached.
    Recovery and standby copies both apply the changelog this way.

    A mark header is only parsed where the shard holds a mark of its source topic (a
    row may be skipped); otherwise only the last one per topic in the batch is, for the
    marks stored with the batch: in a rebuild of an empty shard that is one parse per
    batch instead of one per row.
    """
    rows: list[tuple[bytes, bytes | None]] = []
    latest: dict[bytes, bytes] = {}  # source topic → its last mark applied, raw
    at_end = False
    position = shard.changelog_offset
    for message in messages:
        error = message.error()
        if error is not None:
            at_end = at_end or error.code() == _PARTITION_EOF
            continue
        position = message.offset()
        raw = _mark_header(message.headers())
        if raw is not None:
            topic, _, rest = raw.partition(_SEP_BYTES)
            if topic in held:
                applied = held[topic]
            else:
                applied = held[topic] = shard.mark(topic.decode(errors="replace"))
            if applied is not None:
                mark = _parse_mark(rest)
                if mark is not None and mark <= applied:
                    stats.skipped += 1  # the shard has this write (and maybe newer)
                    continue
            latest[topic] = rest
        rows.append((message.key(), message.value()))
    stats.rows += len(rows)
    marks = {topic.decode(errors="replace"): mark for topic, rest in latest.items()
             if (mark := _parse_mark(rest)) is not None}
    if rows or marks or position > shard.changelog_offset:
        shard.apply_changelog(rows, marks, position)
    return position, at_end


def _mark_header(headers: list[tuple[str, bytes]] | None) -> bytes | None:
    """The raw ``agentd-mark`` header value among ``headers`` (None if absent)."""
    for name, value in headers or ():
        if name == MARK_HEADER and value is not None:
            return value
    return None


def _parse_mark(rest: bytes) -> Mark | None:
    """The mark of a header value's ``offset \x1f index`` part; None if it is not one."""
    offset, _, index = rest.partition(_SEP_BYTES)
    try:
        return int(offset), int(index)
    except ValueError:
        return None
