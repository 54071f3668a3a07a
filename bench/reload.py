#!/usr/bin/env python3
"""Reload: SIGHUP to ``agentd start`` under steady load; processing gap, in flight, loss.

The parent produces messages with ids 0..M-1 at a steady rate (quick: 3,000/s for 8 s;
full: 5,000/s for 20 s) to an 8-partition topic. agentd (2 instances) runs the bench
agent with a topic sink: every event becomes ``{"id", "tag", "pid"}`` there, tagged
with the content of a tag file read when the app module is imported. Half-way through,
the tag file says ``v2`` and the daemon gets SIGHUP, so outputs made by the reloaded
code carry ``v2``. Afterwards, once the group has committed all M inputs, the sink is
read back:

- lost = inputs with no output, duplicated = outputs beyond one per id;
- gap = the longest interval between consecutive sink timestamps (producer CreateTime,
  ms) from 1 s before the HUP to 1 s after the first ``v2`` output: at a steady input
  rate, the time nothing came out;
- in flight = outputs of ids produced before the HUP that came out after it;
- switch = time from the HUP to the first ``v2`` output.

If the daemon refuses SIGHUP (exits, or nothing ever comes out as ``v2``), the bench
reports 0 with the reason.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c


def produce_steady(bootstrap: str, topic: str, rate: int, seconds: float,
                   at_half: Any) -> tuple[int, float, int]:
    """Produce ids 0.. at ``rate``/s for ``seconds``; call ``at_half()`` half-way.

    Returns (messages produced, wall-clock time of the HUP, first id produced after it).
    """
    import random

    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": 1})
    rng = random.Random(7)
    total = int(rate * seconds)
    started = time.monotonic()
    hup_time, hup_id = 0.0, total
    for i in range(total):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0.002:
            producer.poll(0)
            time.sleep(delay)
        if not hup_time and i >= total // 2:
            producer.flush(10)
            hup_time, hup_id = time.time(), i
            at_half()
        producer.produce(topic, c.json_value(i, rng), b"k%d" % (i % c.KEY_SPACE))
    producer.flush(30)
    return total, hup_time, hup_id


def read_sink(bootstrap: str, topic: str, partitions: int = 8) -> list[tuple[int, str, float]]:
    """Every (id, tag, timestamp s) in the sink topic, read by assignment, no group."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": c.unique("bench-reader"),
                         "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        remaining = {p for p, end in ends.items() if end > 0}
        out: list[tuple[int, str, float]] = []
        while remaining:
            batch = consumer.consume(10_000, 10)
            if not batch:
                raise TimeoutError(f"sink {topic} stopped short; partitions left {remaining}")
            for msg in batch:
                if msg.error() is not None:
                    continue
                value = json.loads(msg.value())
                out.append((int(value["id"]), str(value["tag"]), msg.timestamp()[1] / 1000))
                if msg.offset() + 1 >= ends[msg.partition()]:
                    remaining.discard(msg.partition())
        return out
    finally:
        consumer.close()


def analyse(outputs: list[tuple[int, str, float]], total: int, hup_time: float,
            hup_id: int) -> dict[str, Any]:
    ids = [i for i, _, _ in outputs]
    distinct = set(ids)
    v2_times = [t for _, tag, t in outputs if tag == "v2"]
    result: dict[str, Any] = {"lost": total - len(distinct & set(range(total))),
                              "duplicated": len(ids) - len(distinct),
                              "outputs": len(ids), "v2_outputs": len(v2_times)}
    if not v2_times:
        result["reason"] = "no output carries v2: the reload did not take effect"
        return result
    first_v2 = min(v2_times)
    window = sorted(t for _, _, t in outputs if hup_time - 1 <= t <= first_v2 + 1)
    gaps = [b - a for a, b in itertools.pairwise(window)]
    result["gap_ms"] = round(max(gaps, default=0.0) * 1000, 1)
    result["switch_ms"] = round((first_v2 - hup_time) * 1000, 1)
    result["in_flight"] = sum(1 for i, _, t in outputs if i < hup_id and t >= hup_time)
    return result


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--rate", type=int, default=None, help="messages/s (3,000; full 5,000)")
    cli.add_argument("--seconds", type=float, default=None, help="load duration (8; full 20)")
    args = cli.parse_args()
    rate = args.rate or (3_000 if args.quick else 5_000)
    seconds = args.seconds or (8.0 if args.quick else 20.0)
    timeout = args.timeout or 120.0
    summary: dict[str, Any] = {"bench": "reload", "rate": rate, "seconds": seconds,
                               "gap_ms": 0.0, "in_flight": 0, "lost": 0, "duplicated": 0}
    missing = c.agentd_missing()
    if missing:
        summary["reason"] = missing
    else:
        with c.broker(args.bootstrap) as bootstrap:
            summary.update(run(bootstrap, rate, seconds, timeout))
    rows = [[k, summary.get(k, "")] for k in ("gap_ms", "switch_ms", "in_flight", "lost",
                                               "duplicated", "outputs", "v2_outputs")]
    print(f"\nreload under load, {rate:,} msg/s for {seconds:.0f} s, one SIGHUP half-way\n")
    print(c.table(["measure", "value"], rows))
    if summary.get("reason"):
        print(f"\nnot measured: {summary['reason']}")
    print()
    c.emit_json(summary)


def run(bootstrap: str, rate: int, seconds: float, timeout: float) -> dict[str, Any]:
    source = c.create_topic(bootstrap, c.unique("bench-reload-in"))
    sink = c.create_topic(bootstrap, c.unique("bench-reload-out"))
    group = c.unique("bench-reload")
    tag_file = Path(tempfile.mkdtemp(prefix="bench-reload-")) / "tag"
    tag_file.write_text("v1")
    env = {"BENCH_TOPIC": source, "BENCH_INSTANCES": "2", "BENCH_SINK": sink,
           "BENCH_TAG_FILE": str(tag_file)}
    watch = c.OffsetWatch(bootstrap, group, source, 8)
    try:
        with c.Agentd(bootstrap, group, env) as daemon:
            assert daemon.proc is not None
            pid = daemon.proc.pid

            def hup() -> None:
                tag_file.write_text("v2")
                os.kill(pid, signal.SIGHUP)

            total, hup_time, hup_id = produce_steady(bootstrap, source, rate, seconds, hup)
            deadline = time.monotonic() + timeout
            while (done := watch.committed_total()) < total:
                why = daemon.exited()
                if why:
                    return {"reason": f"after SIGHUP: {why}", "count": done}
                if time.monotonic() > deadline:
                    return {"reason": f"hung: {done} of {total} committed; {daemon.log_tail(2)}"}
                time.sleep(0.1)
        result = analyse(read_sink(bootstrap, sink), total, hup_time, hup_id)
        result["count"] = total
        return result
    finally:
        watch.close()
        shutil.rmtree(tag_file.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
