"""agentlib.deliveries: a batch of counted deliveries completes once, whoever reports last;
``send_rows`` queues a table flush's rows of one partition on one report."""

from __future__ import annotations

import asyncio
import threading

from confluent_kafka import KafkaException

from agentlib.deliveries import Batches, DeliveryBatch, RowsReport, send_rows


class _Message:
    def __init__(self, topic: str, key: bytes | None, value: bytes | None,
                 partition: int = 0, offset: int = 0) -> None:
        self._fields = (topic, key, value, partition, offset)

    def topic(self) -> str:
        return self._fields[0]

    def key(self) -> bytes | None:
        return self._fields[1]

    def value(self) -> bytes | None:
        return self._fields[2]

    def partition(self) -> int:
        return self._fields[3]

    def offset(self) -> int:
        return self._fields[4]


def _batch(track_offsets: bool = False) -> tuple[DeliveryBatch, list[DeliveryBatch]]:
    completed: list[DeliveryBatch] = []
    loop = asyncio.new_event_loop()
    loop.close()  # only carried by the batch here
    return DeliveryBatch(loop, lambda batch: None, completed.append,
                         track_offsets=track_offsets), completed


def test_a_batch_reported_before_its_seal_completes_at_the_seal():
    batch, completed = _batch()
    for token in ("a", "b"):
        batch.sent(token, "t", None, token.encode())
    batch(None, _Message("t", None, b"a"))
    batch(None, _Message("t", None, b"b"))
    assert completed == []          # not sealed: more messages may join
    assert batch.seal() is True     # the seal is the last event: the caller settles
    assert completed == [] and batch.outcome() == (["a", "b"], [])


def test_a_batch_sealed_before_its_last_report_completes_in_the_reporting_thread():
    batch, completed = _batch()
    batch.sent("a", "t", None, b"a")
    batch.sent("b", "t", None, b"b")
    batch(None, _Message("t", None, b"a"))
    assert batch.seal() is False
    assert completed == []
    batch(None, _Message("t", None, b"b"))
    assert completed == [batch]


def test_reports_from_many_threads_complete_the_batch_exactly_once():
    for _ in range(20):
        batch, completed = _batch()
        count = 2000
        for i in range(count):
            batch.sent(i, "t", None, b"%d" % i)

        def report(batch: DeliveryBatch, values: range) -> None:
            for i in values:
                batch(None, _Message("t", None, b"%d" % i))

        threads = [threading.Thread(target=report, args=(batch, range(start, count, 4)))
                   for start in range(4)]
        for thread in threads:
            thread.start()
        sealed = batch.seal()
        for thread in threads:
            thread.join()
        assert len(completed) + int(sealed) == 1
        assert batch.outcome() == (list(range(count)), [])


def test_a_failure_is_matched_to_its_message_and_identical_messages_fail_once():
    batch, completed = _batch(track_offsets=True)
    for token, value in (("a", b"x"), ("b", b"y"), ("c", b"x")):
        batch.sent(token, "t", b"k", value)
    batch.seal()
    batch(None, _Message("t", b"k", b"x", partition=3, offset=7))
    batch("broker said no", _Message("t", b"k", b"x", partition=3))
    batch(None, _Message("t", b"k", b"y", partition=1, offset=2))
    assert completed == [batch]
    delivered, failed = batch.outcome()
    assert delivered == ["b", "c"]   # one of the two identical messages failed
    [(token, error)] = failed
    assert token == "a" and isinstance(error, KafkaException)
    assert batch.offsets() == {3: 7, 1: 2}


def test_a_failure_that_matches_no_message_fails_the_whole_batch():
    batch, _ = _batch()
    batch.sent("a", "t", None, b"x")
    batch.sent("b", "t", None, b"y")
    batch.seal()
    batch(None, _Message("t", None, b"x"))
    batch("lost", _Message("other", None, b"z"))
    delivered, failed = batch.outcome()
    assert delivered == [] and [token for token, _ in failed] == ["a", "b"]




class _Handle:
    """librdkafka's ``produce`` as ``send_rows`` calls it; the local queue holds
    ``room`` messages, then raises BufferError."""

    def __init__(self, room: int = 1_000) -> None:
        self.room = room
        self.queued: list[tuple[str, bytes | None, bytes, int, object, object]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes, *, partition: int,
                headers: object, on_delivery: object) -> None:
        if len(self.queued) >= self.room:
            raise BufferError("Local: Queue full")
        self.queued.append((topic, value, key, partition, headers, on_delivery))


def _send(handle: _Handle, rows: dict[bytes, bytes | None]) -> tuple[list, Batches, list]:
    settled: list[RowsReport] = []

    async def main() -> list:
        return send_rows(handle, batches, "log", 3, rows.items(), [("h", b"p")],
                         (b"last", b"9", [("h", b"l")]), settled.append, "token")

    batches = Batches()
    return asyncio.run(main()), batches, settled


def test_send_rows_queues_every_row_then_the_last_on_one_report():
    handle = _Handle()
    unsent, batches, _ = _send(handle, {b"a": b"1", b"b": None})
    assert unsent == []
    assert [(key, value, partition, headers) for _, value, key, partition, headers, _
            in handle.queued] == [(b"a", b"1", 3, [("h", b"p")]), (b"b", None, 3, [("h", b"p")]),
                                  (b"last", b"9", 3, [("h", b"l")])]
    report = handle.queued[0][5]
    assert isinstance(report, RowsReport)
    assert all(message[5] is report for message in handle.queued)
    assert report.sent == 3 and report.token == "token"
    report(None, _Message("log", b"a", b"1", 3, 10))
    report(None, _Message("log", b"last", b"9", 3, 12))
    assert not batches.completed    # one row is not reported yet
    report(None, _Message("log", b"b", None, 3, 11))
    assert list(batches.completed) == [report]
    assert report.error is None and report.last == 12 and report.partition == 3


def test_send_rows_returns_what_a_full_queue_refused_in_order_and_counts_the_rest():
    handle = _Handle(room=1)
    unsent, batches, _ = _send(handle, {b"a": b"1", b"b": b"2", b"c": b"3"})
    assert unsent == [(b"b", b"2", [("h", b"p")]), (b"c", b"3", [("h", b"p")]),
                      (b"last", b"9", [("h", b"l")])]
    report = handle.queued[0][5]
    assert report.sent == 1         # only the queued row is counted on the report
    report(None, _Message("log", b"a", b"1", 3, 4))
    assert list(batches.completed) == [report]


def test_a_failed_row_fails_the_report_with_the_first_error():
    handle = _Handle()
    _send(handle, {b"a": b"1"})
    report = handle.queued[0][5]
    report("first", _Message("log", b"a", b"1", 3, -1))
    report("second", _Message("log", b"last", b"9", 3, -1))
    assert isinstance(report.error, KafkaException)
    assert report.error.args[0] == "first" and report.last == -1
