#!/usr/bin/env python3
"""Throughput: agentd against the bare confluent-kafka loop, Faust, Quix Streams and arroyo.

One real Kafka (``DevBroker``), one 8-partition topic of N JSON messages (~120 B, keys
over 1,000 values) produced once; every contestant reads all of it in its own consumer
group, in its own child process, with a timeout (a hung one scores 0 with the reason),
and is timed from its first processed message to its N-th:

- ``bare``: one confluent-kafka consumer, ``consume(500)``, ``json.loads``, async commit 1/s;
- ``bare_tuned``: the same loop with agentd's consumer tuning (``fetch.queue.backoff.ms``
  50 instead of 1000, ``fetch.wait.max.ms`` 100 instead of 500, ``queued.min.messages``
  20,000 instead of 100,000, the session): what of agentd's lead over ``bare`` is those
  settings alone;
- ``faust``: faust-streaming worker, one agent on a ``Record``;
- ``quix``: Quix Streams ``Application`` + ``StreamingDataFrame.update``, library defaults;
- ``arroyo_mp`` / ``arroyo_single``: ``StreamProcessor`` with ``RunTaskWithMultiprocessing``
  (2 processes, ``json.loads``) or ``RunTask``, then ``CommitOffsets``;
- ``agentd_1`` / ``agentd`` (2 instances): ``agentd start``; the clock starts at the time
  the first instance writes on its first message and stops when the group's committed
  offsets reach the end (see ``_common.run_agentd``).

Only ratios from one run count: absolute rates drift between runs on shared machines.
Usage: ``bench/throughput.py [--quick] [--count N] [--only bare,agentd]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c

ORDER = ("bare", "bare_tuned", "faust", "quix", "arroyo_mp", "arroyo_single", "agentd_1", "agentd")
INSTANCES = {"agentd_1": 1, "agentd": 2}


def summary(results: dict[str, c.Outcome]) -> dict[str, object]:
    rate = {name: outcome.msg_s for name, outcome in results.items()}
    agentd = rate.get("agentd", 0.0)
    out: dict[str, object] = {f"{name}_msg_s": rate.get(name, 0.0) for name in ORDER}
    out.update({
        "agentd_vs_faust": c.ratio(agentd, rate.get("faust", 0.0)),
        "agentd_vs_quix": c.ratio(agentd, rate.get("quix", 0.0)),
        "agentd_vs_arroyo_mp": c.ratio(agentd, rate.get("arroyo_mp", 0.0)),
        "agentd_vs_bare": c.ratio(agentd, rate.get("bare", 0.0)),
        "agentd_vs_bare_tuned": c.ratio(agentd, rate.get("bare_tuned", 0.0)),
        "agentd_2_vs_1": c.ratio(agentd, rate.get("agentd_1", 0.0)),
    })
    reasons = {name: o.reason for name, o in results.items() if o.reason}
    if reasons:
        out["reasons"] = reasons
    return out


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--count", type=int, default=None, help="messages (default 1M, quick 200k)")
    cli.add_argument("--only", default=",".join(ORDER), help="comma-separated contestants")
    args = cli.parse_args()
    count = args.count or (200_000 if args.quick else 1_000_000)
    timeout = args.timeout or (90.0 if args.quick else 600.0)
    names = [n for n in ORDER if n in args.only.split(",")]
    results: dict[str, c.Outcome] = {}
    with c.broker(args.bootstrap) as bootstrap:
        topic = c.create_topic(bootstrap, c.unique("bench-throughput"))
        seconds = c.produce(bootstrap, topic, count)
        c.log(f"produced {count:,} messages to {topic} in {seconds:.1f} s")
        for name in names:
            kind = "agentd" if name in INSTANCES else name
            results[name] = c.run_contestant(name, bootstrap, topic, count, timeout, kind=kind,
                                             instances=INSTANCES.get(name, 1))
    print(f"\nthroughput, N = {count:,}, 8 partitions\n")
    print(c.table(["contestant", "msg/s", "count", "seconds", "note"],
                  [o.row() for o in results.values()]))
    print()
    c.emit_json({"bench": "throughput", "count": count, **summary(results)})


if __name__ == "__main__":
    main()
