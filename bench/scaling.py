#!/usr/bin/env python3
"""Scaling: a CPU-bound agent (~200 µs of pure Python per message) on 1..cores instances.

agentd with instances = 1, 2, ... ``os.cpu_count()`` against Faust with agent
``concurrency`` 1 and N (N = cores: Faust runs them all in one process, so the GIL
caps it at one core) and Quix Streams (one process). The work is ``_common.burn``
with the iteration count calibrated here once, so every contestant does the same work.
Speed-up = rate / rate of the same runtime with one instance.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c

WORK_MICROS = 200.0


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--count", type=int, default=None, help="messages (default 60k, quick 20k)")
    cli.add_argument("--max-instances", type=int, default=os.cpu_count() or 1)
    args = cli.parse_args()
    count = args.count or (20_000 if args.quick else 60_000)
    timeout = args.timeout or (120.0 if args.quick else 400.0)
    cores = max(1, args.max_instances)
    work = c.iterations_for(WORK_MICROS)
    c.log(f"{work} burn iterations = {WORK_MICROS:.0f} µs of work per message")
    # label -> (kind, agentd instances, Faust concurrency)
    plan: dict[str, tuple[str, int, int]] = {
        f"agentd_{n}": ("agentd", n, 1) for n in range(1, cores + 1)}
    plan["faust_1"] = ("faust", 1, 1)
    plan[f"faust_c{cores}"] = ("faust", 1, cores)
    plan["quix"] = ("quix", 1, 1)
    results: dict[str, c.Outcome] = {}
    with c.broker(args.bootstrap) as bootstrap:
        topic = c.create_topic(bootstrap, c.unique("bench-scaling"))
        c.produce(bootstrap, topic, count)
        for label, (kind, instances, concurrency) in plan.items():
            results[label] = c.run_contestant(label, bootstrap, topic, count, timeout, kind=kind,
                                              work=work, instances=instances,
                                              concurrency=concurrency)
    agentd_1 = results["agentd_1"].msg_s
    faust_1 = results["faust_1"].msg_s
    rows = []
    for label, outcome in results.items():
        base = agentd_1 if label.startswith("agentd") else faust_1
        speedup = c.ratio(outcome.msg_s, base) if not label.startswith("quix") else "-"
        rows.append([label, outcome.msg_s, speedup, outcome.reason or "ok"])
    print(f"\nscaling, N = {count:,}, {WORK_MICROS:.0f} µs/msg, {os.cpu_count()} cores\n")
    print(c.table(["contestant", "msg/s", "speed-up vs 1", "note"], rows))
    print()
    top = results[f"agentd_{cores}"].msg_s
    summary: dict[str, object] = {"bench": "scaling", "count": count, "work_us": WORK_MICROS,
                                  "cores": os.cpu_count()}
    summary.update({f"{label}_msg_s": o.msg_s for label, o in results.items()})
    summary.update({f"agentd_speedup_{n}": c.ratio(results[f"agentd_{n}"].msg_s, agentd_1)
                    for n in range(2, cores + 1)})
    summary["faust_concurrency_speedup"] = c.ratio(results[f"faust_c{cores}"].msg_s, faust_1)
    summary["agentd_max_vs_faust"] = c.ratio(top, max(faust_1, results[f"faust_c{cores}"].msg_s))
    summary["agentd_max_vs_quix"] = c.ratio(top, results["quix"].msg_s)
    reasons = {label: o.reason for label, o in results.items() if o.reason}
    if reasons:
        summary["reasons"] = reasons
    c.emit_json(summary)


if __name__ == "__main__":
    main()
