"""Bad input mixed into the stream (issue 10, scenarios 7 and 8).

7. Messages no agent can use: invalid JSON, a Record missing a field, wrong types, a
   null value, an empty value, a value larger than the ring, and binary garbage in
   headers. Each goes through ``on_error`` exactly once (``log``: one error line;
   ``dead_letter``: the raw record in the DLQ), the offsets advance past it, the daemon
   neither crashes nor stalls, and every good message around them reaches the sink.
   Garbage headers on an otherwise good message are not an error: it must come out.
   A header *name* that is not UTF-8 (legal in the protocol, written by non-Java
   clients; see ``rawkafka``) cannot be handed to an agent as ``str``: that message
   goes to ``on_error`` too, and must never stop the supervisor.
8. A poison message (its instance dies on it): after ``poison_after`` crashes it goes
   to the DLQ with the error headers, and the stream goes on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kafkatools
import pytest
from agentdproc import POISON_AGENT
from faultkit import KEYS, FaultRun, Scale, load, until
from rawkafka import produce_with_raw_header

RECORD_AGENT = """
import os
import agentlib as faust

app = faust.App("fault-typed-app")


class Item(faust.Record):
    key: str
    seq: int


source = app.topic(os.environ["IN_TOPIC"], key_type=bytes, value_type=Item)
sink = app.topic(os.environ["SINK_TOPIC"], key_type=bytes, value_type=bytes,
                 value_serializer="raw")


@app.agent(source, sink=[sink])
async def checked(stream):
    async for item in stream:
        # Arithmetic on the fields: wrong types fail here if decoding let them by.
        yield f"{item.key.upper().lower()}:{item.seq + 0}:".encode()
"""

GARBAGE_HEADERS = [("\x00\xff\u20ac\ud7ff", bytes(range(256))), ("", b"\xc3\x28\xff"),
                   ("agentd-error", b"\x00" * 5), ("null", None)]
TOO_BIG = 100_000   # the ring below is 64 KiB
#: Produced once per run through librdkafka directly, with a non-UTF-8 header name.
RAW_HEADER_VALUE = json.dumps({"key": "k0", "seq": -2}).encode()


def bad_messages() -> list[tuple[Any, Any, Any]]:
    """One of each kind of bad input: ``(key, value, headers)``."""
    return [
        (b"bad", b"{not json", None),
        (b"bad", json.dumps({"key": "k0"}).encode(), None),                  # no seq
        (b"bad", json.dumps({"key": ["k0"], "seq": "abc"}).encode(), None),  # wrong types
        (b"bad", None, None),                                                # null value
        (b"bad", b"", None),                                                 # empty value
        (b"bad", json.dumps({"key": "big", "seq": -1, "pad": "x" * TOO_BIG}).encode(), None),
        (b"\xff\x00bad", b"\xff\xfe{garbage", GARBAGE_HEADERS),              # all of it
    ]


def json_numbered(seq: int) -> tuple[Any, ...]:
    key = f"k{seq % KEYS}"
    value = json.dumps({"key": key, "seq": seq}).encode()
    if seq % 50 == 7:   # garbage headers on a good message: not an error
        return key.encode(), value, GARBAGE_HEADERS
    return key.encode(), value


def error_lines(log: str, topic: str) -> set[tuple[int, int]]:
    """Positions ``(partition, offset)`` of ``topic`` the log reports handled once."""
    pattern = re.compile(re.escape(topic) + r"\[(\d+)\]@(\d+)")
    found: list[tuple[int, int]] = []
    for line in log.splitlines():
        if "error processing" in line or "skipped (on_error=log)" in line:
            found += [(int(p), int(o)) for p, o in pattern.findall(line)[:1]]
    assert len(found) == len(set(found)), "an error was handled twice"
    return set(found)


@pytest.mark.kafka
@pytest.mark.parametrize("policy", ["log", "dead_letter"])
def test_bad_messages_go_through_on_error_and_the_stream_flows(
        kafka_bootstrap: str, tmp_path: Path, scale: Scale, policy: str) -> None:
    run = FaultRun(f"7 bad input ({policy})", kafka_bootstrap, tmp_path)
    dlq = kafkatools.create_topic(kafka_bootstrap, f"{run.source}.dlq", 1)
    every = int(scale.rate * 2)   # a round of bad input every 2 s

    def mix_in(seq: int) -> list[tuple[Any, Any, Any]]:
        return bad_messages() if seq % every == every // 2 else []

    agents = {"checked": {"instances": 2, "on_error": policy, "ring_size": "64KiB"}}
    with run.daemon(agents, {"fault_typed": RECORD_AGENT}, app="fault_typed:app") as daemon:
        daemon.wait_consuming()
        produce_with_raw_header(kafka_bootstrap, run.source, b"raw", RAW_HEADER_VALUE,
                                b"\xff\xfe\x80name", b"\x00\xff")
        with load(run, scale.rate, encode=json_numbered, extra=mix_in) as (stream, watcher):
            until(daemon, lambda: stream.extras_sent >= scale.bad_rounds * len(bad_messages()),
                  120, "the bad messages to be sent")
            stream.stop()
            run.finish(daemon, stream, watcher, max_dup=0,
                       note=f"{stream.extras_sent + 1} bad, on_error={policy}")
    bad = stream.extras_sent + 1   # and the raw header name
    assert "died" not in daemon.log(), "bad input must never kill an instance"
    dead = kafkatools.read_to_end(kafka_bootstrap, dlq)
    if policy == "dead_letter":
        rounds = stream.extras_sent // len(bad_messages())
        expected = [v or b"" for _, v, _ in bad_messages()] * rounds + [RAW_HEADER_VALUE]
        assert sorted(r.value or b"" for r in dead) == sorted(expected)
        assert all(dict(r.headers).get("agentd-error") for r in dead)
        assert any(b"exceeds the ring" in dict(r.headers)["agentd-error"] for r in dead)
    else:
        assert not dead
        assert len(error_lines(daemon.log(), run.source)) == bad


@pytest.mark.kafka
def test_a_poison_message_is_dead_lettered_with_error_headers_after_poison_after_crashes(
        kafka_bootstrap: str, tmp_path: Path, scale: Scale) -> None:
    run = FaultRun("8 poison -> DLQ", kafka_bootstrap, tmp_path)
    dlq = kafkatools.create_topic(kafka_bootstrap, f"{run.source}.dlq", 1)
    poison_at = int(scale.rate * 3)

    def poison(seq: int) -> list[tuple[Any, Any, Any]]:
        return [(b"k1", b"poison", None)] if seq == poison_at else []

    agents = {"guarded": {"instances": 2, "on_error": "dead_letter", "poison_after": 3}}
    with run.daemon(agents, {"fault_poison": POISON_AGENT}, app="fault_poison:app") as daemon:
        daemon.wait_consuming()
        with load(run, scale.rate, extra=poison) as (stream, watcher):
            until(daemon, lambda: kafkatools.end_offsets(kafka_bootstrap, dlq)[0] > 0, 120,
                  "the poison message in the DLQ")
            until(daemon, lambda: stream.sent > poison_at + scale.rate * 3, 60,
                  "more input after the poison")
            stream.stop()
            crashes = len(re.findall(r"\] died \(", daemon.log()))
            run.finish(daemon, stream, watcher, max_dup=int(3 * 2 * scale.rate),
                       note=f"{crashes} crashes, then DLQ")
    dead = kafkatools.read_to_end(kafka_bootstrap, dlq)
    assert [r.value for r in dead] == [b"poison"]
    headers = dict(dead[0].headers)
    assert headers["agentd-original-topic"] == run.source.encode()
    assert headers["agentd-agent"] == b"fault_poison.guarded"
    assert b"poison" in headers["agentd-error"]
    poisoned = next(r for r in kafkatools.read_to_end(kafka_bootstrap, run.source)
                    if r.value == b"poison")
    assert headers["agentd-original-partition"] == str(poisoned.partition).encode()
    assert headers["agentd-original-offset"] == str(poisoned.offset).encode()
    assert crashes >= 3, "dead-lettered only after poison_after crashes"
