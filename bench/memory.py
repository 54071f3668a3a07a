#!/usr/bin/env python3
"""Memory: USS and PSS per agent instance, forked from agentd's zygote vs fresh interpreters.

For k = 1..8 instances (quick: 1, 2, 4, 8), ``agentd start`` runs the bench agent with k
instances; once the group has committed a small topic (so every instance has run the
agent, decoded and acked), psutil's ``memory_full_info`` is read for every instance.
The baseline is k fresh interpreters that import the same modules an instance holds
(agentlib, the app, uvloop, confluent-kafka, agentd's worker module when present) and
then idle. USS is what the process alone holds (what one more instance costs); PSS
shares the shared pages out between the processes that map them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c

MB = 1024 * 1024
FRESH_CODE = """
import contextlib, sys
import confluent_kafka, uvloop, agentlib, _agentd_app
with contextlib.suppress(ImportError):
    import supervisor.instance.worker
print("ready", flush=True)
sys.stdin.read()
"""


def measure(pids: list[int]) -> tuple[float, float]:
    """Mean USS and PSS in MB over ``pids``."""
    import psutil

    uss, pss = [], []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            info = psutil.Process(pid).memory_full_info()
            uss.append(info.uss / MB)
            pss.append(info.pss / MB)
    if not uss:
        return 0.0, 0.0
    return sum(uss) / len(uss), sum(pss) / len(pss)


def agentd_memory(bootstrap: str, topic: str, count: int, k: int,
                  timeout: float) -> tuple[float, float, str]:
    """Mean USS, PSS (MB) of agentd's k instances after they processed ``topic``."""
    group = c.unique(f"bench-mem{k}")
    mark_dir = tempfile.mkdtemp(prefix="bench-marks-")
    env = {"BENCH_TOPIC": topic, "BENCH_INSTANCES": str(k), "BENCH_MARK_DIR": mark_dir}
    watch = c.OffsetWatch(bootstrap, group, topic, 8)
    try:
        with c.Agentd(bootstrap, group, env) as daemon:
            deadline = time.monotonic() + timeout
            while watch.committed_total() < count:
                why = daemon.exited()
                if why:
                    return 0.0, 0.0, why
                if time.monotonic() > deadline:
                    return 0.0, 0.0, f"hung: {topic} not committed in {timeout:.0f} s"
                time.sleep(0.1)
            time.sleep(0.5)
            pids = daemon.instance_pids()
            if len(pids) != k:
                return 0.0, 0.0, f"found {len(pids)} instance processes, expected {k}"
            uss, pss = measure(pids)
            return uss, pss, ""
    finally:
        watch.close()
        shutil.rmtree(mark_dir, ignore_errors=True)


def fresh_memory(k: int) -> tuple[float, float, str]:
    """Mean USS, PSS (MB) of k fresh interpreters holding what an instance imports."""
    env = {"PYTHONPATH": str(c.BENCH_DIR), "BENCH_TOPIC": "unused"}
    procs = [subprocess.Popen([sys.executable, "-c", FRESH_CODE], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env}, cwd=c.REPO)
             for _ in range(k)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                err = proc.stderr.read() if proc.stderr else ""
                last = (err.strip().splitlines() or ["no output"])[-1]
                return 0.0, 0.0, f"fresh interpreter failed: {last[-200:]}"
        time.sleep(0.3)
        uss, pss = measure([p.pid for p in procs])
        return uss, pss, ""
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--max-instances", type=int, default=8)
    args = cli.parse_args()
    counts = [k for k in (1, 2, 4, 8) if k <= args.max_instances] if args.quick else list(
        range(1, args.max_instances + 1))
    timeout = args.timeout or 90.0
    messages = 2_000
    rows: list[list[object]] = []
    agentd: dict[int, tuple[float, float]] = {}
    fresh: dict[int, tuple[float, float]] = {}
    reasons: dict[str, str] = {}
    missing = c.agentd_missing()
    with c.broker(args.bootstrap) as bootstrap:
        topic = c.create_topic(bootstrap, c.unique("bench-memory"))
        c.produce(bootstrap, topic, messages)
        for k in counts:
            if missing:
                a_uss, a_pss, why = 0.0, 0.0, missing
            else:
                a_uss, a_pss, why = agentd_memory(bootstrap, topic, messages, k, timeout)
            if why:
                reasons[f"agentd_{k}"] = why
            f_uss, f_pss, fwhy = fresh_memory(k)
            if fwhy:
                reasons[f"fresh_{k}"] = fwhy
            agentd[k], fresh[k] = (a_uss, a_pss), (f_uss, f_pss)
            c.log(f"k={k}: agentd USS {a_uss:.1f} PSS {a_pss:.1f} MB; "
                  f"fresh USS {f_uss:.1f} PSS {f_pss:.1f} MB")
            rows.append([k, round(a_uss, 1), round(a_pss, 1), round(f_uss, 1), round(f_pss, 1),
                         why or "ok"])
    print("\nmemory per instance (MB, mean over the k instances)\n")
    print(c.table(["instances", "agentd USS", "agentd PSS", "fresh USS", "fresh PSS", "note"],
                  rows))
    print()
    top = counts[-1]
    summary: dict[str, object] = {
        "bench": "memory", "instances": counts,
        "agentd_uss_mb": round(agentd[top][0], 1), "agentd_pss_mb": round(agentd[top][1], 1),
        "fresh_uss_mb": round(fresh[top][0], 1), "fresh_pss_mb": round(fresh[top][1], 1),
        "uss_fresh_vs_agentd": c.ratio(fresh[top][0], agentd[top][0]),
        "per_k": {k: {"agentd_uss": round(agentd[k][0], 1), "agentd_pss": round(agentd[k][1], 1),
                      "fresh_uss": round(fresh[k][0], 1), "fresh_pss": round(fresh[k][1], 1)}
                  for k in counts},
    }
    if reasons:
        summary["reasons"] = reasons
    c.emit_json(summary)


if __name__ == "__main__":
    main()
