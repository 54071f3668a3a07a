#!/usr/bin/env python3
"""Where agentd spends its time: CPU µs per message in the supervisor and in the workers.

Starts ``agentd start`` (the throughput bench's trivial agent, 2 instances by default)
on an empty 8-partition topic, waits until its instances are up, then:

1. **clean pass**: produces N messages (quick 100k, full 400k) while the supervisor is
   stopped (SIGSTOP), so it meets a backlog as in the throughput bench; resumes it,
   waits until the group has committed them, and divides each process's CPU time
   (psutil, user + system) spent meanwhile by N: µs per message in the supervisor, in
   the zygote, and in all workers together (a message is handled by one worker); and
   each process's busy share of that wall time (a starved worker shows < 100 %);
2. **profiled pass**: the same again with ``py-spy record --nonblocking`` attached to
   the supervisor and to each worker, and prints each one's hottest functions by own
   (leaf) samples and by inclusive samples.

py-spy must be installed (``pip install py-spy``; it needs ptrace rights, e.g. root).
Last line: one JSON object.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    import psutil

    out = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            out[pid] = times.user + times.system
        except psutil.Error:
            out[pid] = 0.0
    return out


def run_delay(pids: list[int]) -> dict[int, float]:
    """Seconds each process spent runnable but waiting for a CPU (/proc/PID/schedstat)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            out[pid] = 0.0
    return out


def wait_committed(watch: c.OffsetWatch, daemon: c.Agentd, target: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while watch.committed_total() < target:
        why = daemon.exited()
        if why:
            return why
        if time.monotonic() > deadline:
            return f"hung: {watch.committed_total()} of {target} committed"
        time.sleep(0.05)
    return ""


def leaf_and_inclusive(raw: Path, top: int = 10) -> tuple[list[tuple[str, float]],
                                                            list[tuple[str, float]], int]:
    """From py-spy's raw (collapsed) output: the top own-time and inclusive frames, in %."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    if not raw.exists():
        return [], [], 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    if not total:
        return [], [], 0

    def pct(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        # Frames on (nearly) every stack are the entry points: they say nothing.
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common()
                if n < 0.95 * total][:top]

    return pct(own), pct(inclusive), total


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({os.path.basename(file)})" if file else name


def profiled_pass(bootstrap: str, topic: str, count: int, pids: dict[str, int],
                  watch: c.OffsetWatch, daemon: c.Agentd, timeout: float,
                  out_dir: Path) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"reason": "py-spy not installed"}
    recorders = {}
    for role, pid in pids.items():
        raw = out_dir / f"{role}.txt"
        recorders[role] = (subprocess.Popen(
            [spy, "record", "--nonblocking", "-r", "250", "-f", "raw", "-o", str(raw),
             "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), raw)
    time.sleep(1.0)  # let py-spy attach
    base = watch.committed_total()
    c.produce(bootstrap, topic, count)
    why = wait_committed(watch, daemon, base + count, timeout)
    for proc, _ in recorders.values():
        proc.send_signal(signal.SIGINT)
    profiles: dict[str, Any] = {}
    for role, (proc, raw) in recorders.items():
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        own, inclusive, samples = leaf_and_inclusive(raw)
        profiles[role] = {"samples": samples, "own": own, "inclusive": inclusive}
    if why:
        profiles["reason"] = why
    return profiles


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--instances", type=int, default=2)
    cli.add_argument("--count", type=int, default=None, help="messages per pass")
    cli.add_argument("--keep", default=None, help="keep py-spy's raw files in this dir")
    cli.add_argument("--work-us", type=float, default=0.0,
                     help="pure-Python work per message in the agent (scaling's is 200)")
    args = cli.parse_args()
    count = args.count or (100_000 if args.quick else 400_000)
    timeout = args.timeout or 300.0
    summary: dict[str, Any] = {"bench": "profile_agentd", "count": count,
                               "instances": args.instances, "supervisor_us_per_msg": 0.0,
                               "worker_us_per_msg": 0.0}
    missing = c.agentd_missing()
    if missing:
        summary["reason"] = missing
        c.emit_json(summary)
        return
    out_dir = Path(args.keep or tempfile.mkdtemp(prefix="bench-profile-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with c.broker(args.bootstrap) as bootstrap:
        topic = c.create_topic(bootstrap, c.unique("bench-profile"))
        group = c.unique("bench-profile")
        work = c.iterations_for(args.work_us) if args.work_us else 0
        env = {"BENCH_TOPIC": topic, "BENCH_INSTANCES": str(args.instances),
               "BENCH_WORK": str(work)}
        watch = c.OffsetWatch(bootstrap, group, topic, 8)
        try:
            with c.Agentd(bootstrap, group, env) as daemon:
                summary.update(measure(bootstrap, topic, count, args.instances, watch, daemon,
                                       timeout, out_dir))
        finally:
            watch.close()
    print(f"\nagentd CPU per message, N = {count:,}, {args.instances} instances\n")
    print(c.table(["process", "CPU s", "µs / message"],
                  [[k, summary.get(f"{k}_cpu_s", 0), summary.get(f"{k}_us_per_msg", 0)]
                   for k in ("supervisor", "zygote", "worker")]))
    for role, profile in summary.get("profiles", {}).items():
        if isinstance(profile, dict) and profile.get("own"):
            print(f"\n{role}: {profile['samples']} samples; own time %\n")
            print(c.table(["function", "own %"], profile["own"]))
            print(c.table(["function", "inclusive %"], profile["inclusive"]))
    print()
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    c.emit_json(summary)


def measure(bootstrap: str, topic: str, count: int, instances: int, watch: c.OffsetWatch,
            daemon: c.Agentd, timeout: float, out_dir: Path) -> dict[str, Any]:
    import psutil

    assert daemon.proc is not None
    deadline = time.monotonic() + 60
    while len(daemon.instance_pids()) < instances:
        if daemon.exited() or time.monotonic() > deadline:
            return {"reason": daemon.exited() or "instances did not start in 60 s"}
        time.sleep(0.2)
    time.sleep(2.0)  # consumer joined, partitions assigned
    supervisor = daemon.proc.pid
    workers = daemon.instance_pids()
    zygotes = [p.pid for p in psutil.Process(supervisor).children()]
    idle_start = cpu_seconds([supervisor, *workers])
    time.sleep(2.0)
    idle_end = cpu_seconds([supervisor, *workers])
    # A backlog, as in the throughput bench: the supervisor is stopped (SIGSTOP, far
    # shorter than the group's session timeout) while the messages are produced.
    os.kill(supervisor, signal.SIGSTOP)
    try:
        c.produce(bootstrap, topic, count)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    before = cpu_seconds([supervisor, *zygotes, *workers])
    delay_before = run_delay([supervisor, *workers])
    started = time.monotonic()
    why = wait_committed(watch, daemon, count, timeout)
    if why:
        return {"reason": why}
    wall = time.monotonic() - started
    after = cpu_seconds([supervisor, *zygotes, *workers])
    delay = {pid: t - delay_before[pid] for pid, t in run_delay([supervisor, *workers]).items()}
    used = {pid: after[pid] - before[pid] for pid in before}
    result: dict[str, Any] = {
        # CPU % while no message arrives: a busy-waiting loop shows up here.
        "idle_supervisor_cpu_pct": round(50 * (idle_end[supervisor] - idle_start[supervisor]), 1),
        "idle_worker_cpu_pct": round(50 * sum(idle_end[p] - idle_start[p] for p in workers), 1),
        "supervisor_cpu_s": round(used[supervisor], 2),
        "zygote_cpu_s": round(sum(used[p] for p in zygotes), 2),
        "worker_cpu_s": round(sum(used[p] for p in workers), 2),
    }
    for role in ("supervisor", "zygote", "worker"):
        result[f"{role}_us_per_msg"] = round(result[f"{role}_cpu_s"] * 1e6 / count, 2)
    # Busy share of the pass (produce to last commit): a worker far below 100 % while
    # the others are not saturated either is starved, not slow.
    result["wall_s"] = round(wall, 2)
    result["supervisor_busy_pct"] = round(100 * used[supervisor] / wall, 1)
    result["worker_busy_pct"] = [round(100 * used[p] / wall, 1) for p in workers]
    # Runnable but not running (other processes had the CPUs): busy + this ~ 100 % means
    # CPU-bound on a crowded machine; both low means the process waited on something.
    result["supervisor_runq_pct"] = round(100 * delay[supervisor] / wall, 1)
    result["worker_runq_pct"] = [round(100 * delay[p] / wall, 1) for p in workers]
    pids = {"supervisor": supervisor, **{f"worker{i}": pid for i, pid in enumerate(workers)}}
    result["profiles"] = profiled_pass(bootstrap, topic, count, pids, watch, daemon, timeout,
                                       out_dir)
    return result


if __name__ == "__main__":
    main()
