"""The tables' write-back cache without a broker: one changelog row per updated key per
flush (its latest value and mark, the window's last write last), records held until
every row of their flush is delivered, the window's bounds, and a replay that applies
a flush whole or not at all. Memory shards and a real RocksDB shard; a stand-in
producer whose deliveries the test reports by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentlib.deliveries import RowsReport
from agentlib.rawrecord import new_raw_record
from agentlib.tables.changelog import ChangelogRuntime
from agentlib.tables.replay import (
    MARK_HEADER,
    UPTO_HEADER,
    ReplayState,
    apply_messages,
    decode_mark,
    encode_mark,
)
from agentlib.tables.replay import Recovery as Stats
from agentlib.tables.shards import MemoryShard, RocksShard
from agentlib.tickets import Ledger, Ticket

TABLE = SimpleNamespace(name="counts", changelog_topic_name="app-counts-changelog",
                        store="memory://", is_global=False)


class Producer:
    """``send_soon`` that queues; the test delivers (or fails) what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes | None, int, list[tuple[str, bytes]]]] = []
        self.futures: list[asyncio.Future[Any]] = []

    def send_soon(self, topic: str, key: bytes, value: bytes | None, partition: int,
                  headers: list[tuple[str, bytes]]) -> asyncio.Future[Any]:
        assert topic == TABLE.changelog_topic_name
        future = asyncio.get_running_loop().create_future()
        self.sent.append((key, value, partition, headers))
        self.futures.append(future)
        return future

    def deliver(self, count: int | None = None, error: BaseException | None = None) -> None:
        done = self.futures[:count]
        del self.futures[:len(done)]
        for future in done:
            if error is None:
                future.set_result(SimpleNamespace(partition=0, offset=len(self.sent)))
            else:
                future.set_exception(error)


class Records:
    """Real tickets on a real ledger: which records are done."""

    def __init__(self) -> None:
        self.done: list[int] = []
        self.errors: list[tuple[int, BaseException]] = []

        async def retry_wanted(record: Any, error: BaseException, attempt: int) -> bool:
            self.errors.append((record.offset, error))
            return False

        self.ledger = Ledger("test", on_done=lambda record: self.done.append(record.offset),
                             retry_wanted=retry_wanted, wake=lambda: None,
                             requeue=lambda tickets: None)

    def event(self, offset: int, partition: int = 0, topic: str = "src") -> Any:
        """An event of ``topic[partition]@offset`` the agent has moved past."""
        record = new_raw_record(topic, partition, offset, None, None, None, ())
        self.ledger.fed()
        ticket = Ticket(self.ledger, record, 1)
        ticket.moved_past = True  # the agent is past it: only its deliveries hold it
        return SimpleNamespace(message=record, _ticket=ticket)


def runtime(producer: Producer, **kwargs: Any) -> ChangelogRuntime:
    return ChangelogRuntime(Path("/nonexistent"), producer=lambda: producer,
                            consumer_settings={}, **kwargs)


def count(runtime: ChangelogRuntime, shard: Any, event: Any, key: bytes) -> None:
    """``counts[key] += 1`` as the table does it."""
    held = shard.get(key)
    runtime.write(TABLE, shard, event, key, str(int(held or b"0") + 1).encode())


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_flush_produces_each_updated_key_once_with_its_latest_value_and_mark():
    async def main() -> None:
        producer, records = Producer(), Records()
        tables = runtime(producer)
        shard = MemoryShard(0)
        for offset, key in enumerate([b"a", b"b", b"a", b"c", b"a", b"b"]):
            count(tables, shard, records.event(offset), key)
        assert shard.get(b"a") == b"3"  # reads see the window at once
        assert producer.sent == []       # nothing produced before the flush
        tables.flush()
        rows = {key: (value, dict(headers)) for key, value, _, headers in producer.sent}
        assert {key: value for key, (value, _) in rows.items()} == {
            b"a": b"3", b"b": b"2", b"c": b"1"}
        # The window's last write (b at offset 5) goes last, with the plain mark; the
        # others are partial rows naming it, each with its key's latest mark.
        assert producer.sent[-1][0] == b"b"
        assert rows[b"b"][1][MARK_HEADER] == encode_mark("src", (5, 0))
        assert rows[b"a"][1][MARK_HEADER] == rows[b"c"][1][MARK_HEADER] == \
            b"\x1fsrc\x1f5\x1f0"
        assert decode_mark(rows[b"a"][1][MARK_HEADER]) == ("src", (5, 0))
        assert tables.window.flushes == 1 and tables.window.rows_produced == 3

    asyncio.run(main())


def test_records_are_done_only_when_every_row_of_their_flush_is_delivered():
    async def main() -> None:
        producer, records = Producer(), Records()
        tables = runtime(producer)
        shard = MemoryShard(0)
        for offset, key in enumerate([b"a", b"b", b"c"]):
            count(tables, shard, records.event(offset), key)
        tables.flush()
        producer.deliver(2)
        await settle()
        assert records.done == []  # c's row is not delivered yet: no record is done
        producer.deliver()
        await settle()
        assert records.done == [0, 1, 2]
        assert records.ledger.in_flight == 0

    asyncio.run(main())


class RowsProducer(Producer):
    """A producer with ``send_rows`` whose local queue takes ``room`` rows per call: it
    returns the rest, which the runtime sends as delivery futures (``send_soon``)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.reports: list[tuple[Any, RowsReport]] = []

    def send_rows(self, topic: str, partition: int, rows: Any, headers: Any, last: Any,
                  settle: Any, token: Any) -> list[Any]:
        messages = [(key, value, headers) for key, value in rows] + [last]
        queued, unsent = messages[:self.room], messages[self.room:]
        self.sent += [(key, value, partition, heads) for key, value, heads in queued]
        loop = asyncio.get_running_loop()
        report = RowsReport(loop, settle, lambda _: None, token, partition)
        report.seal(len(queued))
        report.last = len(queued) - 1
        self.reports.append((settle, report))
        return unsent

    def settle_reports(self) -> None:
        for settle, report in self.reports:
            settle(report)
        self.reports.clear()


def test_rows_a_full_queue_refused_are_sent_after_and_hold_their_records_too():
    async def main() -> None:
        producer, records = RowsProducer(room=2), Records()
        tables = runtime(producer)
        shard = MemoryShard(0)
        for offset, key in enumerate([b"a", b"b", b"c", b"d"]):
            count(tables, shard, records.event(offset), key)
        tables.flush()
        # Two rows queued on the report, then the rest as futures, the last write last.
        assert [key for key, *_ in producer.sent] == [b"a", b"b", b"c", b"d"]
        assert len(producer.futures) == 2
        producer.settle_reports()
        await settle()
        assert records.done == []  # c's and d's rows are not delivered yet
        producer.deliver()
        await settle()
        assert records.done == [0, 1, 2, 3] and records.ledger.in_flight == 0

    asyncio.run(main())


def test_a_failed_row_fails_every_record_of_its_flush_to_on_error():
    async def main() -> None:
        producer, records = Producer(), Records()
        tables = runtime(producer)
        shard = MemoryShard(0)
        count(tables, shard, records.event(0), b"a")
        count(tables, shard, records.event(1), b"b")
        tables.flush()
        producer.deliver(1)
        producer.deliver(error=RuntimeError("broker said no"))
        await settle()
        assert sorted(offset for offset, _ in records.errors) == [0, 1]
        assert records.done == [0, 1]  # on_error's verdict (ACK) finished them

    asyncio.run(main())


def test_the_window_flushes_at_its_record_bound_and_after_its_interval():
    async def main() -> None:
        producer, records = Producer(), Records()
        tables = runtime(producer, flush_records=3)
        tables.window.interval = 0.02
        shard = MemoryShard(0)
        for offset in range(3):  # two writes per record count as one record
            event = records.event(offset)
            count(tables, shard, event, b"k")
            count(tables, shard, event, b"k")
        assert tables.window.records == 3 and tables.window.flushes == 0
        count(tables, shard, records.event(3), b"k")  # a 4th record: the 3 are flushed
        assert tables.window.flushes == 1 and len(producer.sent) == 1
        assert producer.sent[0][1] == b"6"
        assert dict(producer.sent[0][3])[MARK_HEADER] == encode_mark("src", (2, 1))
        assert tables.window.records == 1
        await asyncio.sleep(0.1)  # the timer closes a window that never filled
        assert tables.window.flushes == 2 and producer.sent[-1][1] == b"7"

    asyncio.run(main())


def test_a_redelivered_write_is_skipped_and_its_row_produced_again():
    async def main() -> None:
        producer, records = Producer(), Records()
        tables = runtime(producer)
        shard = MemoryShard(0)
        shard.write(b"a", b"5", "src", (10, 0))  # the shard holds offset 10 already
        count(tables, shard, records.event(10), b"a")
        tables.flush()
        assert shard.get(b"a") == b"5" and tables.redelivered_writes == 1
        assert producer.sent[0][:2] == (b"a", b"5")
        producer.deliver()
        await settle()
        assert records.done == [10]

    asyncio.run(main())


def test_a_rocksdb_shard_stores_the_window_once_with_its_marks_before_producing(tmp_path):
    async def main() -> None:
        producer, records = Producer(), Records()
        tables = runtime(producer)
        shard = RocksShard(tmp_path / "s", 0)
        for offset in range(5):
            count(tables, shard, records.event(offset), b"k")
        assert shard.pending  # in memory until the flush
        tables.flush()
        assert not shard.pending and len(producer.sent) == 1
        shard.close()
        again = RocksShard(tmp_path / "s", 0)
        assert again.get(b"k") == b"5" and again.mark("src") == (4, 0)
        again.close()

    asyncio.run(main())


def test_a_window_over_two_source_topics_names_the_other_topics_latest_mark():
    async def main() -> None:
        producer, records = Producer(), Records()
        tables = runtime(producer)
        shard = MemoryShard(0)
        count(tables, shard, records.event(7, topic="left"), b"k")
        count(tables, shard, records.event(3, topic="right"), b"k")  # k's last write
        tables.flush()
        ((key, value, _, headers),) = producer.sent
        assert (key, value) == (b"k", b"2")
        assert headers == [(MARK_HEADER, encode_mark("right", (3, 0))),
                           (UPTO_HEADER, encode_mark("left", (7, 0)))]
        replayed = MemoryShard(0)
        apply_messages(replayed, [Message(i, *row) for i, row in enumerate(
            (k, v, h) for k, v, _, h in producer.sent)], ReplayState(), Stats())
        assert replayed.mark("left") == (7, 0) and replayed.mark("right") == (3, 0)

    asyncio.run(main())


# -- replay: a flush applied whole or not at all ------------------------------------

class Message:
    """A consumed changelog message, as confluent-kafka gives it."""

    def __init__(self, offset: int, key: bytes, value: bytes | None,
                 headers: list[tuple[str, bytes]] | None) -> None:
        self._offset, self._key, self._value, self._headers = offset, key, value, headers

    def error(self) -> None:
        return None

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


def flush_rows(first: int, rows: list[tuple[bytes, bytes, int]]) -> list[Message]:
    """A flush as the cache writes it: ``(key, value, source offset)``, the last last."""
    end = f"src\x1f{rows[-1][2]}\x1f0"
    out = [Message(first + i, key, value, [(MARK_HEADER, f"\x1f{end}".encode())])
           for i, (key, value, _) in enumerate(rows[:-1])]
    key, value, _ = rows[-1]
    out.append(Message(first + len(rows) - 1, key, value, [(MARK_HEADER, end.encode())]))
    return out


def test_a_replay_applies_a_whole_flush_and_drops_one_that_never_finished():
    shard, state, stats = MemoryShard(0), ReplayState(), Stats()
    done = flush_rows(0, [(b"a", b"1", 0), (b"b", b"1", 1)])
    cut = flush_rows(2, [(b"a", b"2", 2), (b"c", b"1", 3), (b"b", b"2", 4)])[:2]
    apply_messages(shard, done + cut, state, stats)
    # The second flush lost its last row (its instance died mid-flush, no record of it
    # acked): a and c are held back, and the stored offset stops before them.
    assert dict(shard.items()) == {b"a": b"1", b"b": b"1"}
    assert shard.mark("src") == (1, 0) and shard.changelog_offset == 1
    assert state.drop_unfinished() == 2
    # The records are redelivered to the next owner, whose flush follows.
    apply_messages(shard, flush_rows(4, [(b"a", b"2", 2), (b"c", b"1", 3)]), state, stats)
    assert dict(shard.items()) == {b"a": b"2", b"b": b"1", b"c": b"1"}
    assert shard.mark("src") == (3, 0)


def test_rows_of_an_unfinished_flush_followed_by_another_flush_are_dropped():
    shard, state, stats = MemoryShard(0), ReplayState(), Stats()
    cut = flush_rows(0, [(b"x", b"9", 0), (b"y", b"9", 1)])[:1]
    later = flush_rows(1, [(b"a", b"1", 0), (b"b", b"1", 2)])  # another flush's end
    apply_messages(shard, cut + later, state, stats)
    assert dict(shard.items()) == {b"a": b"1", b"b": b"1"} and state.dropped == 1


def test_a_flush_split_over_two_batches_is_applied_when_its_last_row_comes():
    shard, state, stats = MemoryShard(0), ReplayState(), Stats()
    rows = flush_rows(10, [(b"a", b"1", 0), (b"b", b"1", 1), (b"c", b"1", 2)])
    apply_messages(shard, rows[:2], state, stats)
    assert len(shard) == 0 and shard.changelog_offset == 9  # stops before the held rows
    apply_messages(shard, rows[2:], state, stats)
    assert len(shard) == 3 and shard.changelog_offset == 12 and shard.mark("src") == (2, 0)


def test_flushes_the_shard_holds_are_skipped_whole():
    shard, state, stats = MemoryShard(0), ReplayState(), Stats()
    shard.write(b"a", b"7", "src", (6, 0))  # the shard stored the first flush itself
    held = flush_rows(0, [(b"a", b"6", 4), (b"b", b"1", 6)])
    later = flush_rows(2, [(b"b", b"2", 7), (b"a", b"8", 8)])
    apply_messages(shard, held + later, state, stats)
    assert (stats.rows, stats.skipped) == (2, 2)
    assert (shard.get(b"a"), shard.get(b"b")) == (b"8", b"2")
    assert shard.mark("src") == (8, 0)


@pytest.mark.parametrize("rows", [1, 3])
def test_rows_written_one_per_write_still_replay(rows):
    shard, stats = MemoryShard(0), Stats()
    old = [Message(i, b"k", str(i + 1).encode(), [(MARK_HEADER, encode_mark("src", (i, 0)))])
           for i in range(rows)]
    apply_messages(shard, old, ReplayState(), stats)
    assert shard.get(b"k") == str(rows).encode() and shard.mark("src") == (rows - 1, 0)


def test_a_rocksdb_shards_read_cache_is_bounded_and_dropped_by_a_replay(tmp_path,
                                                                        monkeypatch):
    from agentlib.tables import shards

    monkeypatch.setattr(shards, "READ_CACHE_MAX", 4)
    shard = RocksShard(tmp_path / "s", 0)
    for i in range(6):
        shard.write(str(i).encode(), b"v", "src", (i, 0))
    shard.flush()
    assert [shard.get(str(i).encode()) for i in range(8)] == [b"v"] * 6 + [None, None]
    assert len(shard._clean) <= 4  # dropped whole when full, then refilled by reads
    assert shard.get(b"5") == b"v"
    shard.apply_changelog([(b"5", b"new")], {}, 0)  # a replay writes RocksDB directly
    assert shard.get(b"5") == b"new"
    shard.close()
