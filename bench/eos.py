#!/usr/bin/env python3
"""Exactly once: agentd's exactly_once against its own at_least_once and Quix Streams'.

One real Kafka (``DevBroker``), one 8-partition topic of N JSON messages (~120 B, keys
over 1,000 values, each with a distinct ``id``) produced once; each contestant reads
all of it in its own consumer group and forwards every value to a fresh 8-partition
sink topic of its own (decode the JSON, produce it again): the trivial agent with a
topic sink.

- ``agentd_alo``: ``agentd start`` with ``_eos_app`` (2 instances, ``processing_guarantee
  = "at_least_once"``, ``commit_interval`` 0.1 s as in every agentd bench): timed from
  the first processed message until the group's committed offsets reach the end (an
  offset is committed only once its sink records were acknowledged).
- ``agentd_eos``: the same under ``"exactly_once"`` with ``commit_interval``
  ``--eos-interval``: each instance commits its outputs and its partitions' offsets in
  one transaction per interval, so the committed offsets reaching the end means the last
  transaction committed (the output is visible to ``read_committed`` readers then).
  Afterwards a ``read_committed`` reader counts the sink's ids: ``agentd_eos_exact`` says
  whether every input is there exactly once (the same is checked for ``agentd_alo``).
- ``quix_eos``: Quix Streams ``Application(processing_guarantee="exactly-once")``,
  ``StreamingDataFrame.to_topic``, the library's defaults (``commit_interval`` 5 s), in
  its own venv; the clock stops when its step has seen the N-th message, before that
  message's produce and before the transaction that commits it: this favours Quix.
- ``--intervals 0.1,0.5,1``: one more ``agentd_eos`` run per ``commit_interval`` (the
  ``eos_interval_sweep`` key), each checked read_committed as well.
- ``--baseline PATH``: ``agentd_eos_base``, ``agentd_eos`` run by another source tree
  (e.g. ``git worktree add /tmp/base main``; its ``bin/agentd`` and its code, this
  checkout's ``_eos_app``) in the same rotation, checked the same way: a change's effect
  as ``agentd_eos_vs_base``, from one run on one broker beside the same Quix rounds.

Each contestant runs ``--rounds`` times (default 3), the order rotated every round; its
row is its median round (every round's rate in the JSON, ``*_rounds_msg_s``), and
``agentd_eos_exact`` holds only if every round's reader saw every input once. One run of
each swung 2x on this shared machine (the broker speeds up for its first minutes, and
other processes come and go); the median of rotated rounds is steadier.

Only ratios from one run count: absolute rates drift between runs on shared machines.
Usage: ``bench/eos.py [--quick] [--count N] [--rounds N] [--eos-interval S]
[--intervals S,S] [--only agentd_alo,agentd_eos,quix_eos] [--baseline PATH]``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c

ORDER = ("agentd_alo", "agentd_eos", "quix_eos")
BASE = "agentd_eos_base"  # --baseline
PARTITIONS = 8
INSTANCES = 2
ALO_INTERVAL = 0.1  # the agentd benches' commit_interval (``_common.Agentd``)
EOS_INTERVAL = 1.0  # agentd's default; the sweep in docs/exactly-once.md ("Measured")
QUIX_INTERVAL = 5.0  # Quix Streams' default ``commit_interval``
#: Floors from issue 19: agentd EOS / Quix EOS, agentd EOS / agentd at least once.
TARGETS = {"agentd_eos_vs_quix_eos": 1.5, "eos_vs_alo": 0.6}


# ---------------------------------------------------------------------------- the sink

def sink_ids(bootstrap: str, topic: str, timeout: float = 120.0) -> Counter[int]:
    """The ``id`` of every value a ``read_committed`` reader sees in ``topic``, counted.

    Read to each partition's end-of-file event: transaction markers take offsets no
    reader is given, so the high watermark is never reached."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": c.unique("bench-eos-reader"),
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    ids: Counter[int] = Counter()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        left = set(range(PARTITIONS))
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(left)} not read to the end")
            for msg in consumer.consume(10_000, 0.2):
                error = msg.error()
                if error is None:
                    ids[json.loads(msg.value())["id"]] += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    left.discard(msg.partition())
                else:
                    raise KafkaException(error)
    finally:
        consumer.close()
    return ids


def exactness(ids: Counter[int], count: int) -> dict[str, Any]:
    """What a reader saw against inputs ``0 .. count-1``: lost, duplicated, foreign."""
    lost = sum(1 for i in range(count) if i not in ids)
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    foreign = sum(n for i, n in ids.items() if not 0 <= i < count)
    return {"exact": lost == 0 and duplicates == 0 and foreign == 0, "lost": lost,
            "duplicates": duplicates, "foreign": foreign}


def rotated(names: list[str], turn: int) -> list[str]:
    """Round ``turn``'s order: each contestant leads once every ``len(names)`` rounds."""
    start = turn % len(names) if names else 0
    return names[start:] + names[:start]


def median_round(name: str, rounds: list[c.Outcome]) -> c.Outcome:
    """One row from a contestant's rounds: the round of median rate (a failed round
    rates 0; of two middles the faster), every round's rate, and the readers' findings
    over all rounds (exact only if every round was)."""
    chosen = sorted(rounds, key=lambda o: o.msg_s)[len(rounds) // 2]
    extra = {**chosen.extra, "rounds_msg_s": [o.msg_s for o in rounds]}
    if any("exact" in o.extra for o in rounds):
        extra["exact"] = all(o.extra.get("exact") for o in rounds)
        for key in ("lost", "duplicates", "foreign"):
            extra[key] = sum(int(o.extra.get(key) or 0) for o in rounds)
    failed = [f"round {i + 1}: {o.reason}" for i, o in enumerate(rounds) if o.reason]
    reason = chosen.reason and "; ".join(failed)
    if failed and not reason:
        extra["failed_rounds"] = failed
    return c.Outcome(name, chosen.msg_s, chosen.count, chosen.seconds, reason, extra)


# ---------------------------------------------------------------------------- contestants

def run_agentd(name: str, bootstrap: str, topic: str, count: int, timeout: float,
               guarantee: str, interval: float, tree: Path = c.REPO) -> c.Outcome:
    """agentd (``tree``'s) forwarding to a fresh sink under ``guarantee``; the sink read
    back after."""
    sink = c.create_topic(bootstrap, c.unique(f"bench-eos-{name}-out"), PARTITIONS)
    settings = {"app": "_eos_app:app", "processing_guarantee": guarantee,
                "commit_interval": interval}
    outcome = c.run_agentd(name, bootstrap, topic, count, INSTANCES, timeout,
                           tree=tree, group=c.unique(f"bench-{name}"),
                           settings=settings, env={"BENCH_SINK": sink})
    outcome.extra.update(guarantee=guarantee, commit_interval=interval)
    if outcome.reason:
        return outcome
    seen = exactness(sink_ids(bootstrap, sink), count)
    outcome.extra.update(seen)
    c.log(f"{name}: read_committed reader of {sink}: lost {seen['lost']}, duplicates "
          f"{seen['duplicates']}, foreign {seen['foreign']}")
    return outcome


def run_quix(bootstrap: str, topic: str, count: int, timeout: float) -> c.Outcome:
    sink = c.create_topic(bootstrap, c.unique("bench-eos-quix-out"), PARTITIONS)
    return c.run_contestant("quix_eos", bootstrap, topic, count, timeout,
                            options=["--sink", sink])


# ---------------------------------------------------------------------------- output

def summary(results: dict[str, c.Outcome], *, count: int, eos_interval: float,
            sweep: dict[float, c.Outcome] | None = None) -> dict[str, Any]:
    """The JSON line: the issue's keys, exactness, the intervals, the sweep, the targets."""
    rate = {name: o.msg_s for name, o in results.items()}
    eos, alo, quix = (rate.get(n, 0.0) for n in ("agentd_eos", "agentd_alo", "quix_eos"))
    found = {name: results[name].extra for name in ("agentd_eos", "agentd_alo", BASE)
             if name in results}
    out: dict[str, Any] = {
        "count": count, "partitions": PARTITIONS, "agentd_instances": INSTANCES,
        "agentd_eos_msg_s": eos, "agentd_alo_msg_s": alo, "quix_eos_msg_s": quix,
        "agentd_eos_vs_quix_eos": c.ratio(eos, quix), "eos_vs_alo": c.ratio(eos, alo),
        **{f"{name}_rounds_msg_s": o.extra["rounds_msg_s"] for name, o in results.items()
           if "rounds_msg_s" in o.extra},
        "agentd_eos_exact": bool(found.get("agentd_eos", {}).get("exact")),
        "agentd_eos_lost": found.get("agentd_eos", {}).get("lost"),
        "agentd_eos_duplicates": found.get("agentd_eos", {}).get("duplicates"),
        "agentd_alo_exact": bool(found.get("agentd_alo", {}).get("exact")),
        "eos_commit_interval_s": eos_interval, "alo_commit_interval_s": ALO_INTERVAL,
        "quix_commit_interval_s": QUIX_INTERVAL,
    }
    if BASE in results:
        out[f"{BASE}_msg_s"] = rate[BASE]
        out["agentd_eos_vs_base"] = c.ratio(eos, rate[BASE])
        out[f"{BASE}_exact"] = bool(found[BASE].get("exact"))
    if sweep:
        out["eos_interval_sweep"] = {f"{s:g}": {"msg_s": o.msg_s,
                                                "exact": bool(o.extra.get("exact"))}
                                     for s, o in sweep.items()}
    out["targets_met"] = {key: bool(out[key] >= floor) for key, floor in TARGETS.items()}
    reasons = {name: o.reason for name, o in results.items() if o.reason}
    reasons.update({f"{name}_failed_rounds": "; ".join(o.extra["failed_rounds"])
                    for name, o in results.items() if o.extra.get("failed_rounds")})
    reasons.update({f"agentd_eos_{s:g}s": o.reason for s, o in (sweep or {}).items()
                    if o.reason})
    if reasons:
        out["reasons"] = reasons
    return out


def note(outcome: c.Outcome) -> str:
    """The table's note: how the row was timed, and what the reader saw."""
    if outcome.reason:
        return outcome.reason
    if outcome.name == "quix_eos":
        return f"exactly-once, commit_interval {QUIX_INTERVAL:g} s; to N-th processed"
    seen = outcome.extra
    return (f"{seen.get('guarantee')}, commit_interval {seen.get('commit_interval'):g} s; to "
            f"committed end; read_committed (all rounds) lost {seen.get('lost')} dup "
            f"{seen.get('duplicates')}")


def parse_intervals(text: str) -> list[float]:
    """``--intervals``: comma-separated seconds, each > 0 ("" : none)."""
    values = [float(item) for item in text.split(",") if item.strip()]
    if any(v <= 0 for v in values):
        raise ValueError(f"--intervals: every interval must be > 0: {text!r}")
    return values


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--count", type=int, default=None, help="messages (default 1M, quick 200k)")
    cli.add_argument("--rounds", type=int, default=3, help="rounds per contestant, order "
                     "rotated; the median counts (default 3)")
    cli.add_argument("--eos-interval", type=float, default=EOS_INTERVAL,
                     help=f"agentd_eos's commit_interval, seconds (default {EOS_INTERVAL:g})")
    cli.add_argument("--intervals", default="", help="also run agentd_eos with each of these "
                     "commit_intervals (comma-separated seconds)")
    cli.add_argument("--only", default=",".join(ORDER), help="comma-separated contestants")
    cli.add_argument("--baseline", type=Path, default=None, help="another source tree: "
                     f"also its agentd_eos, as {BASE} (see above)")
    args = cli.parse_args()
    count = args.count or (200_000 if args.quick else 1_000_000)
    timeout = args.timeout or (180.0 if args.quick else 600.0)
    intervals = parse_intervals(args.intervals)
    names = [n for n in ORDER if n in args.only.split(",")]
    if args.baseline is not None:
        names.append(BASE)
    measured: dict[str, list[c.Outcome]] = {name: [] for name in names}
    sweep: dict[float, c.Outcome] = {}
    with c.broker(args.bootstrap) as bootstrap:
        topic = c.create_topic(bootstrap, c.unique("bench-eos"), PARTITIONS)
        seconds = c.produce(bootstrap, topic, count)
        c.log(f"produced {count:,} messages to {topic} in {seconds:.1f} s")
        for turn in range(max(1, args.rounds)):
            for name in rotated(names, turn):
                if name == "agentd_alo":
                    outcome = run_agentd(name, bootstrap, topic, count, timeout,
                                         "at_least_once", ALO_INTERVAL)
                elif name in ("agentd_eos", BASE):
                    outcome = run_agentd(name, bootstrap, topic, count, timeout,
                                         "exactly_once", args.eos_interval,
                                         args.baseline if name == BASE else c.REPO)
                else:
                    outcome = run_quix(bootstrap, topic, count, timeout)
                measured[name].append(outcome)
        for interval in intervals:
            sweep[interval] = run_agentd(f"agentd_eos_{interval:g}s", bootstrap, topic, count,
                                         timeout, "exactly_once", interval)
    results = {name: median_round(name, rounds) for name, rounds in measured.items()}
    print(f"\neos: forward each value to a topic sink, N = {count:,}, {PARTITIONS} partitions, "
          f"agentd {INSTANCES} instances; median of {max(1, args.rounds)} rounds\n")
    rows = [[o.name, o.msg_s, o.count, round(o.seconds, 2), note(o)]
            for o in [*results.values(), *sweep.values()]]
    print(c.table(["contestant", "msg/s", "count", "seconds", "note"], rows))
    out = summary(results, count=count, eos_interval=args.eos_interval, sweep=sweep)
    out["rounds"] = max(1, args.rounds)
    print(f"\nagentd EOS / Quix EOS: {out['agentd_eos_vs_quix_eos']:.2f} (floor 1.5), agentd "
          f"EOS / agentd at least once: {out['eos_vs_alo']:.2f} (floor 0.6), read_committed "
          f"exact: {out['agentd_eos_exact']}\n")
    if args.baseline is not None:
        out["baseline_tree"] = str(args.baseline)
        print(f"agentd EOS / the baseline tree's: {out['agentd_eos_vs_base']:.2f}\n")
    c.emit_json({"bench": "eos", **out})


if __name__ == "__main__":
    main()
