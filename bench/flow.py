#!/usr/bin/env python3
"""Where an agentd throughput run spends the machine: two trees side by side.

``trees.py`` says which tree is faster end to end; this says why. The same run as
``throughput.py``'s ``agentd`` row (2 instances, a topic of N JSON messages, the clock
from the first processed message to the commit of the last), and beside it, every
20 ms, each process's CPU time and run-queue wait (``/proc/<pid>/task/*/schedstat``:
seconds on a CPU, seconds runnable but waiting for one): the supervisor, each
instance, the broker (this bench's child processes) and the bench itself; and the
daemon's status document (partitions paused, instances' backlog and records held).

Per role over the timed window: CPU seconds and run-queue seconds (all threads), and for
the supervisor's and the instances' main threads the rest of the wall time too (asleep:
an instance waiting on its doorbell, the supervisor in ``poll``). With 2 cores a run is
CPU-bound when the processes' CPU adds up to about 2 x wall; if one tree's processes
sleep more while the others do not run, something serializes them. Also: the pause
flags' transitions seen and partition-seconds paused, the largest backlog and records
held.

With ``FLOW_TRACE_ROOT=DIR`` each run gets a directory there (``AGENTD_FLOW_TRACE`` in
the daemon's environment) and the daemon's log is copied into it, for a tracer that a
``sitecustomize`` on PYTHONPATH installs (issue 21's resume stall was found so: the
pauses, resumes, fetches and ring fill per loop turn; librdkafka's own timeline comes
from ``BENCH_AGENTD_KAFKA='debug=fetch,consumer'`` in that log).

Usage: ``bench/flow.py --baseline PATH [--candidate PATH] [--count N] [--rounds R]``.
Last line: one JSON object.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c
import psutil

TICK = os.sysconf("SC_CLK_TCK")
EVERY = 0.02
SIDES = ("baseline", "candidate")


def sched(pid: int, main_only: bool = False) -> tuple[float, float]:
    """Seconds on a CPU and seconds waiting runnable, all threads of ``pid`` (or its
    main thread only)."""
    ran = waited = 0
    with contextlib.suppress(OSError):
        for task in [str(pid)] if main_only else os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()
                ran += int(fields[0])
                waited += int(fields[1])
    return ran / 1e9, waited / 1e9


def status(daemon: c.Agentd) -> dict[str, Any] | None:
    from supervisor.cli.control_client import request
    from supervisor.daemon.ops.control import ControlError

    try:
        return request(daemon.workdir / "state", "status", timeout=2.0)
    except (ControlError, OSError):
        return None


class Sampler(threading.Thread):
    """Every :data:`EVERY` s: time, each role's schedstat, and a status digest."""

    def __init__(self, daemon: c.Agentd, broker: list[int]) -> None:
        super().__init__(daemon=True)
        self.agentd = daemon
        self.broker = broker
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def roles(self) -> dict[str, list[int]]:
        assert self.agentd.proc is not None
        sup = self.agentd.proc.pid
        found: dict[str, list[int]] = {"supervisor": [sup], "broker": self.broker,
                                       "bench": [os.getpid()]}
        with contextlib.suppress(psutil.NoSuchProcess):
            insts = self.agentd.instance_pids()
            found["instances"] = insts
            kids = [p.pid for p in psutil.Process(sup).children(recursive=True)]
            found["other_children"] = [p for p in kids if p not in insts]
        return found

    def run(self) -> None:
        while not self.stop.is_set():
            at = time.time()
            roles = self.roles()
            row: dict[str, Any] = {"at": at, "pids": roles}
            for role, pids in roles.items():
                row[role] = [sched(pid) for pid in pids]
                row[role + "_main"] = [sched(pid, True) for pid in pids]
            doc = status(self.agentd)
            if doc is not None:
                parts = doc.get("partitions", [])
                row["paused"] = sum(1 for p in parts if p.get("paused"))
                insts = doc.get("instances", [])
                row["pending"] = [i.get("pending", 0) for i in insts]
                row["held"] = [i.get("in_flight", 0) for i in insts]
                row["acked"] = sum(int(p["position"]) for p in parts
                                   if p.get("position") is not None)
            self.samples.append(row)
            time.sleep(EVERY)


def summarize(samples: list[dict[str, Any]], first: float, last: float) -> dict[str, Any]:
    """Per role over [first, last]: CPU s, run-queue s, asleep s (per process)."""
    inside = [s for s in samples if first <= s["at"] <= last]
    if len(inside) < 3:
        return {"reason": "too few samples"}
    a, b = inside[0], inside[-1]
    wall = b["at"] - a["at"]
    out: dict[str, Any] = {"wall_s": round(wall, 3)}
    for role in ("supervisor", "instances", "broker", "bench", "other_children"):
        before = dict(zip(a["pids"].get(role, []), a.get(role, []), strict=False))
        after = dict(zip(b["pids"].get(role, []), b.get(role, []), strict=False))
        cpu = runq = 0.0
        procs = 0
        for pid, (ran1, wait1) in after.items():
            ran0, wait0 = before.get(pid, (0.0, 0.0))
            cpu += ran1 - ran0
            runq += wait1 - wait0
            procs += 1
        out[role] = {"cpu_s": round(cpu, 3), "runq_s": round(runq, 3), "procs": procs}
        if role in ("supervisor", "instances"):  # main threads: asleep = waiting for work
            before = dict(zip(a["pids"].get(role, []), a.get(role + "_main", []),
                              strict=False))
            after = dict(zip(b["pids"].get(role, []), b.get(role + "_main", []),
                             strict=False))
            ran = sum(r1 - before.get(pid, (0.0, 0.0))[0] for pid, (r1, _w) in after.items())
            wq = sum(w1 - before.get(pid, (0.0, 0.0))[1] for pid, (_r, w1) in after.items())
            out[role].update(main_cpu_s=round(ran, 3), main_runq_s=round(wq, 3),
                             main_asleep_s=round(len(after) * wall - ran - wq, 3))
    flips = sum(1 for x, y in pairwise(inside)
                if x.get("paused") != y.get("paused"))
    paused_s = sum(x.get("paused", 0) * (y["at"] - x["at"])
                   for x, y in pairwise(inside))
    out["pause_changes_seen"] = flips
    out["partition_s_paused"] = round(paused_s, 3)
    out["max_pending"] = max((max(s.get("pending") or [0]) for s in inside), default=0)
    out["max_held"] = max((max(s.get("held") or [0]) for s in inside), default=0)
    out["mean_held"] = round(statistics.mean(sum(s.get("held") or [0]) for s in inside))
    total_cpu = sum(out[r]["cpu_s"] for r in ("supervisor", "instances", "broker", "bench",
                                              "other_children"))
    out["all_cpu_s"] = round(total_cpu, 3)
    out["cores_busy"] = round(total_cpu / wall, 2) if wall else 0.0
    return out


def run_once(side: str, tree: Path, bootstrap: str, topic: str, count: int,
             broker_pids: list[int], timeout: float) -> dict[str, Any]:
    group = c.unique("bench-flow")
    mark_dir = Path(tempfile.mkdtemp(prefix="bench-marks-"))
    env = {"BENCH_TOPIC": topic, "BENCH_INSTANCES": "2", "BENCH_WORK": "0",
           "BENCH_MARK_DIR": str(mark_dir)}
    trace_root = os.environ.get("FLOW_TRACE_ROOT")
    trace_dir = None
    if trace_root:  # /tmp/...: a sitecustomize on PYTHONPATH records the loop's events
        trace_dir = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=trace_root))
        env["AGENTD_FLOW_TRACE"] = str(trace_dir)
    watch = c.OffsetWatch(bootstrap, group, topic, 8)
    try:
        with c.Agentd(bootstrap, group, env, tree=tree) as daemon:
            sampler = Sampler(daemon, broker_pids)
            sampler.start()
            deadline = time.monotonic() + timeout
            while True:
                if watch.committed_total() >= count:
                    last = time.time()
                    break
                if daemon.exited() or time.monotonic() > deadline:
                    return {"side": side, "reason": daemon.exited() or "hung"}
                time.sleep(0.02)
            time.sleep(2 * EVERY)
            sampler.stop.set()
            sampler.join()
            if trace_dir is not None:
                shutil.copy(daemon.log_path, trace_dir / "agentd.log")
        first = c.first_mark(mark_dir)
    finally:
        watch.close()
        shutil.rmtree(mark_dir, ignore_errors=True)
    result = {"side": side, "msg_s": round(count / (last - first)), "first": first,
              "last": last, "trace_dir": str(trace_dir) if trace_dir else None}
    result.update(summarize(sampler.samples, first, last))
    c.log(f"{side}: {result['msg_s']:,} msg/s  {result}")
    return result


def main() -> None:
    cli = c.parser(__doc__ or "")
    cli.add_argument("--baseline", type=Path, required=True)
    cli.add_argument("--candidate", type=Path, default=c.REPO)
    cli.add_argument("--count", type=int, default=1_000_000)
    cli.add_argument("--rounds", type=int, default=2)
    args = cli.parse_args()
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    timeout = args.timeout or 300.0
    with c.broker(args.bootstrap) as bootstrap:
        broker_pids = [p.pid for p in psutil.Process().children(recursive=True)]
        topic = c.create_topic(bootstrap, c.unique("bench-flow"))
        c.produce(bootstrap, topic, args.count)
        for side in SIDES:  # warm-up, unmeasured
            run_once(side, trees[side], bootstrap, topic, args.count, broker_pids, timeout)
        results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for turn in range(args.rounds):
            for side in (SIDES if turn % 2 == 0 else SIDES[::-1]):
                results[side].append(run_once(side, trees[side], bootstrap, topic,
                                              args.count, broker_pids, timeout))
    c.emit_json({"count": args.count, "rounds": args.rounds, "results": results})


if __name__ == "__main__":
    main()
