#!/usr/bin/env python3
"""The supervisor's ceiling: its CPU per message, where it goes, and what it caps.

Every message a host processes passes through the one supervisor process, so its CPU
per message is the host's ceiling whatever the core count (issue 21). One real Kafka,
one 8-partition topic pre-filled with N messages (2,000,000; quick 500,000; ~120 B
JSON), then ``agentd start`` with the null agent (``_null_app.py``: raw codec, no
value type, an empty body) on 1, 2 and 4 instances, each run in a fresh group reading
the whole topic.

**Clean runs.** Every 50 ms the bench reads the supervisor's CPU time from
``/proc/<pid>/stat`` (user + system, all threads, librdkafka's included) and from
``/proc/<pid>/task/<pid>/stat`` (its main thread: the Python loop), and asks the
daemon's control socket for its status document, whose partitions say how far the
supervisor has dispatched and retired (on a gapless topic read from offset 0: the
lowest unacked offset counts the acked records, plus ``in_flight`` the dispatched
ones). The window starts at the first sample that saw a message dispatched (start-up
and the group join stay outside) and ends once as many records were acked after it
as were dispatched after it, so each message in it is paid for both ways: fetch,
route, encode, write, and its ack read, retired and tracked.
``supervisor_us_per_msg`` is the CPU in the window over those messages;
``ceiling_msg_s`` = 10^6 / that. On a machine whose instances cannot keep up with the
supervisor (two cores), the window also holds loop turns that wait for acks, so the
figure is an upper bound for a host where the supervisor is the bound. The status
requests are part of that CPU; their own cost is measured after the run and shown
(``status_poll_us_per_msg``), not subtracted.

**Profiled run** (the headline instance count, 2): the same with ``py-spy record
--nonblocking`` attached to the supervisor for the window. Each sample is attributed
by the innermost supervisor frame, function and source line (read from the tree that
ran), to a part of the path: ``consume`` (librdkafka's consume/poll calls),
``message_objects`` (a Message's accessors: topic, partition, offset, key, value,
timestamp, headers), ``routing``, ``encode``, ``ring_write`` (and the backlog),
``unacked_bookkeeping`` (an instance's records kept for crash re-dispatch, per run of
offsets), ``ack_reading``, ``offset_tracking``, ``commits``, ``dispatch_loop`` (the
loop's own bytecode), ``read_encode`` (the compiled per-message loop, ``_runscan.pyx``:
the accessors and the encode together, which py-spy cannot tell apart), ``loop_other``.
``breakdown_us`` spreads the main thread's µs per message over those shares, and adds
``librdkafka_threads`` (the other threads' µs per message, which py-spy cannot see:
fetching, decompression, the broker protocol).

**Projection**: for agent costs of 5, 20 and 100 µs per message and 2, 8, 16, 32
cores, the host's rate is min(instances / cost, ceiling) with instances = cores - 1
(one core is the supervisor's), from the measured 2-instance ceiling.

``--baseline PATH`` runs another tree's agentd (e.g. a worktree of the commit before)
beside this checkout's in the same run, alternating which goes first, and reports
both and their ratio. Last line: one JSON object.
"""

from __future__ import annotations

import collections
import contextlib
import linecache
import os
import re
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

INSTANCE_COUNTS = (1, 2, 4)
HEADLINE = 2
SAMPLE_EVERY = 0.05
AGENT_COSTS_US = (5, 20, 100)
CORES = (2, 8, 16, 32)
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- sampling

def cpu_ticks(pid: int, tid: int | None = None) -> int:
    """utime + stime (clock ticks) of process ``pid`` (all threads), or of its thread."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def schedstat(pid: int) -> tuple[float, float]:
    """The main thread's seconds on a CPU and seconds waiting runnable for one (other
    load on the machine), in nanosecond resolution (``/proc/<pid>/schedstat``)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        ran, waited = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[:2]
        return int(ran) / 1e9, int(waited) / 1e9
    return 0.0, 0.0


def progress(doc: dict[str, Any]) -> tuple[int, int]:
    """``(dispatched, retired)`` so far, from the status document's partitions: on a
    gapless topic read from offset 0 the lowest unacked offset (``position``) counts
    the records retired (acked), and it plus ``in_flight`` those dispatched."""
    sent = retired = 0
    for row in doc.get("partitions", []):
        if row.get("position") is not None:
            retired += int(row["position"])
            sent += int(row["position"]) + int(row.get("in_flight") or 0)
    return sent, retired


def status(daemon: c.Agentd) -> dict[str, Any] | None:
    from supervisor.cli.control_client import request
    from supervisor.daemon.ops.control import ControlError

    try:
        return request(daemon.workdir / "state", "status", timeout=2.0)
    except (ControlError, OSError):
        return None


class Sample:
    __slots__ = ("acked", "at", "cpu", "dispatched", "main", "runq")

    def __init__(self, pid: int, doc: dict[str, Any]) -> None:
        self.at = time.monotonic()
        self.cpu = cpu_ticks(pid)
        self.main = cpu_ticks(pid, pid)
        self.runq = schedstat(pid)[1]
        self.dispatched, self.acked = progress(doc)


# ---------------------------------------------------------------------------- one run

def run_once(bootstrap: str, topic: str, count: int, instances: int, timeout: float,
             tree: Path, profile: bool) -> dict[str, Any]:
    """One agentd run over the whole topic; the window's figures (or a ``reason``)."""
    group = c.unique(f"bench-ceiling{instances}")
    env = {"BENCH_TOPIC": topic, "BENCH_INSTANCES": str(instances)}
    load = os.getloadavg()[0]
    with c.Agentd(bootstrap, group, env, settings={"app": "_null_app:app"}, tree=tree) as daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        samples: list[Sample] = []
        spy: subprocess.Popen[bytes] | None = None
        raw = Path(tempfile.mkdtemp(prefix="bench-ceiling-spy-")) / "supervisor.txt"
        deadline = time.monotonic() + timeout
        try:
            while True:
                why = daemon.exited()
                if why:
                    return {"reason": why}
                if time.monotonic() > deadline:
                    done = samples[-1].dispatched if samples else 0
                    return {"reason": f"hung: {done} of {count} dispatched after "
                            f"{timeout:.0f} s; {daemon.log_tail(2)}"}
                doc = status(daemon)
                if doc is not None:
                    sample = Sample(pid, doc)
                    samples.append(sample)
                    if profile and spy is None and sample.dispatched > 0:
                        spy = start_spy(pid, raw)
                    if sample.acked >= count:
                        break
                time.sleep(SAMPLE_EVERY)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(30)
            result = window(samples, count)
            if not result.get("reason"):
                result["status_poll_us_per_msg"] = round(
                    poll_cost(daemon, pid) * result["polls"] / result["messages"] * 1e6, 3)
            result["loadavg_1m_before"] = round(load, 2)
            if profile:
                result["profile"] = attribute(raw)
            return result
        finally:
            if spy is not None and spy.poll() is None:
                spy.kill()
            shutil.rmtree(raw.parent, ignore_errors=True)


def window(samples: list[Sample], count: int) -> dict[str, Any]:
    """CPU per message from the first sample that saw a message dispatched until as
    many records were acked after it as were dispatched after it (all of them, as the
    topic is read to its end); see the module docstring."""
    started = [s for s in samples if s.dispatched > 0]
    if not started:
        return {"reason": "no message dispatched"}
    first = started[0]
    messages = count - first.dispatched
    ended = [s for s in started if s.acked - first.acked >= messages]
    if messages <= 0 or not ended or ended[0] is first:
        return {"reason": "too few samples in the window: use more messages"}
    last = ended[0]
    cpu_s = (last.cpu - first.cpu) / TICK
    main_s = (last.main - first.main) / TICK
    wall = last.at - first.at
    return {"supervisor_us_per_msg": round(cpu_s / messages * 1e6, 3),
            "main_thread_us_per_msg": round(main_s / messages * 1e6, 3),
            "other_threads_us_per_msg": round((cpu_s - main_s) / messages * 1e6, 3),
            "msg_s": round(messages / wall),
            "supervisor_busy_pct": round(100 * cpu_s / wall, 1),
            "main_thread_runq_pct": round(100 * (last.runq - first.runq) / wall, 1),
            "window_s": round(wall, 2), "messages": messages,
            "polls": samples.index(last) - samples.index(first)}


def poll_cost(daemon: c.Agentd, pid: int, requests: int = 50) -> float:
    """Supervisor CPU seconds one status request costs, once its work is done (the
    idle loop's own CPU over the same wall time subtracted; the main thread's, which
    answers the control socket, in nanoseconds)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # in flight drained: the loop is idle
        doc = status(daemon)
        if doc is not None and not any(r.get("in_flight") for r in doc.get("partitions", [])):
            break
        time.sleep(0.1)
    time.sleep(0.3)
    idle_start, started = schedstat(pid)[0], time.monotonic()
    time.sleep(0.5)
    idle = (schedstat(pid)[0] - idle_start) / (time.monotonic() - started)
    before, started = schedstat(pid)[0], time.monotonic()
    for _ in range(requests):
        status(daemon)
    spent = schedstat(pid)[0] - before - idle * (time.monotonic() - started)
    return max(0.0, spent / requests)


# ---------------------------------------------------------------------------- profile

def start_spy(pid: int, raw: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "--nonblocking", "-r", "500", "-f", "raw",
                             "--full-filenames", "-o", str(raw), "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PARTS = ("consume", "message_objects", "routing", "encode", "ring_write",
         "unacked_bookkeeping", "ack_reading", "offset_tracking", "commits",
         "dispatch_loop", "read_encode", "loop_other")
#: (file name, function) → part, for every sample whose innermost supervisor frame is
#: in one of these functions (``None``: decided by the source line, :data:`BY_LINE`).
BY_FUNCTION: dict[tuple[str, str], str | None] = {
    **{("commit.py", f): "commits" for f in (
        "commit", "on_commit", "commit_if_due", "caught_up", "committable",
        "mark_committed", "position", "prompt_commit_due")},
    **{("commit.py", f): "offset_tracking" for f in (
        "acked", "_drain_early", "dispatched", "dispatched_many", "dispatched_range",
        "lane", "low_water", "dispatched_runs")},
    ("commit.py", "retire"): None, ("commit.py", "read_acks"): "ack_reading",
    ("instances.py", "read_outbound"): "ack_reading",
    ("instances.py", "acked"): "unacked_bookkeeping",
    **{("unacked.py", f): "unacked_bookkeeping" for f in (
        "add_run", "retire", "discard", "_discard", "_kill", "_prune", "forget", "locate")},
    **{("instances.py", f): "ring_write" for f in (
        "submit", "submit_runs", "_submit", "_write_flat", "pump", "_pump_window")},
    **{("unacked.py", f): "ring_write" for f in ("add", "consumed", "segments", "__bool__")},
    ("ring.py", "write_run"): "ring_write", ("runscan.py", "copy_records_py"): "ring_write",
    ("datapath.py", "pump_instances"): "ring_write",
    ("ring.py", "write_many"): "ring_write", ("ring.py", "try_write"): "ring_write",
    ("ring.py", "_publish_head"): "ring_write", ("ring.py", "_make_room"): "ring_write",
    ("ring.py", "read_many"): "ack_reading", ("ring.py", "release"): "ack_reading",
    ("fence.py", "full_fence"): None,
    ("wire.py", "encode_record"): "encode", ("wire.py", "encode_batch"): "encode",
    ("router.py", "route"): "routing", ("router.py", "_round_robin"): "routing",
    ("router.py", "_adopt"): "routing", ("router.py", "route_batch"): "routing",
    ("datapath.py", "_targets_of"): "routing",
    ("datapath.py", "dispatch"): None, ("datapath.py", "fetch"): None,
    ("runscan.py", "scan_run_py"): None,
    ("datapath.py", "_dispatch_run"): None, ("datapath.py", "_dispatch_each"): None,
}
#: For the functions mapped to None: the first pattern that the source line matches.
BY_LINE = (
    (re.compile(r"\.consume\(|\.poll\("), "consume"),
    # the compiled per-message loop (_runscan.pyx: py-spy sees no Python frame in it)
    (re.compile(r"= scan_run\("), "read_encode"),
    (re.compile(r"\bencode\(|encode_record|encode_batch"), "encode"),
    (re.compile(r"\bmsg\.|headers_of\(|\.timestamp\(\)|\.error\(\)"), "message_objects"),
    (re.compile(r"route"), "routing"),
    (re.compile(r"unacked|inst\.acked|\.acked\(\s*tidx|rkey = |run_keys = "),
     "unacked_bookkeeping"),
    (re.compile(r"tracker\.|lane\.|offsets\.append|dispatched"), "offset_tracking"),
    (re.compile(r"submit|write_many|batch\[|batches"), "ring_write"),
    (re.compile(r"unpack"), "ack_reading"),
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def part_of(frames: list[str]) -> str:
    """The part of the path one sampled stack is in (see :data:`BY_FUNCTION`)."""
    fallback = None
    for frame in reversed(frames):
        match = _FRAME.match(frame)
        if match is None:
            continue
        file, func = match["file"], match["func"].rsplit(".", 1)[-1]
        if "/supervisor/" not in file:
            continue
        key = (os.path.basename(file), func)
        if key not in BY_FUNCTION:
            if fallback is None and func not in ("loop", "run", "main"):
                fallback = "loop_other"
            continue
        part = BY_FUNCTION[key]
        if part is not None:
            return part
        if func == "full_fence":
            continue  # the ring call above it says which side
        text = linecache.getline(file, int(match["line"]))
        for pattern, name in BY_LINE:
            if pattern.search(text):
                return name
        return "dispatch_loop" if func in ("dispatch", "_dispatch_run", "_dispatch_each",
                                           "retire", "fetch") else "loop_other"
    return fallback or "loop_other"


def attribute(raw: Path) -> dict[str, Any]:
    """Share of the supervisor's Python samples per part, from py-spy's raw output."""
    if not raw.exists():
        return {"reason": "no py-spy profile (is py-spy installed, with ptrace rights?)"}
    counts: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[str] = collections.Counter()
    linecache.clearcache()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [f for f in stack.split(";")
                  if not f.startswith(("process ", "thread "))]
        counts[part_of(frames)] += int(count_text)
        if frames:
            lines[_short(frames[-1])] += int(count_text)
    total = sum(counts.values())
    if not total:
        return {"reason": "py-spy took no samples"}
    return {"samples": total,
            "share": {part: round(counts[part] / total, 4) for part in PARTS if counts[part]},
            "top_lines": [(name, round(100 * n / total, 1)) for name, n in lines.most_common(12)]}


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    text = linecache.getline(match["file"], int(match["line"])).strip()[:60]
    return f"{match['func']} ({os.path.basename(match['file'])}:{match['line']}) {text}"


def breakdown(run: dict[str, Any]) -> dict[str, float]:
    """µs per message per part: the main thread's µs split by the profile's shares,
    plus the threads py-spy does not see."""
    share = run.get("profile", {}).get("share", {})
    main_us = float(run.get("main_thread_us_per_msg", 0.0))
    out = {part: round(main_us * share.get(part, 0.0), 3) for part in PARTS}
    out["librdkafka_threads"] = float(run.get("other_threads_us_per_msg", 0.0))
    return out


# ---------------------------------------------------------------------------- projection

def projection(us_per_msg: float) -> list[dict[str, Any]]:
    """The host's rate per agent cost and core count (see the module docstring)."""
    ceiling = 1e6 / us_per_msg if us_per_msg > 0 else 0.0
    rows = []
    for cost in AGENT_COSTS_US:
        for cores in CORES:
            agents = (cores - 1) * 1e6 / cost
            rows.append({"agent_us": cost, "cores": cores, "msg_s": round(min(agents, ceiling)),
                         "bound": "supervisor" if ceiling < agents else "agents"})
    return rows


def projection_table(rows: list[dict[str, Any]]) -> str:
    by = {(r["agent_us"], r["cores"]): r for r in rows}
    table_rows = []
    for cost in AGENT_COSTS_US:
        cells: list[object] = [f"{cost} µs"]
        for cores in CORES:
            row = by[(cost, cores)]
            mark = "*" if row["bound"] == "supervisor" else ""
            cells.append(f"{row['msg_s']:,}{mark}")
        table_rows.append(cells)
    return c.table(["agent cost", *[f"{n} cores" for n in CORES]], table_rows)


# ---------------------------------------------------------------------------- main

def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--count", type=int, default=None,
                     help="messages in the topic (default 2M, quick 500k)")
    cli.add_argument("--instances", default=",".join(map(str, INSTANCE_COUNTS)),
                     help="comma-separated instance counts")
    cli.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    cli.add_argument("--baseline", default=None,
                     help="also run this tree's agentd (a checkout with bin/agentd)")
    args = cli.parse_args()
    count = args.count or (500_000 if args.quick else 2_000_000)
    timeout = args.timeout or (180.0 if args.quick else 600.0)
    counts = [int(n) for n in args.instances.split(",") if n.strip()]
    headline = HEADLINE if HEADLINE in counts else counts[0]
    trees = {"candidate": c.REPO}
    if args.baseline:
        trees = {"baseline": Path(args.baseline).resolve(), "candidate": c.REPO}
    runs: dict[str, dict[int, dict[str, Any]]] = {side: {} for side in trees}
    profiles: dict[str, dict[str, Any]] = {}
    with c.broker(args.bootstrap) as bootstrap:
        topic = c.create_topic(bootstrap, c.unique("bench-ceiling"))
        seconds = c.produce(bootstrap, topic, count)
        c.log(f"produced {count:,} messages to {topic} in {seconds:.1f} s")
        for turn, n in enumerate(counts):
            sides = list(trees) if turn % 2 == 0 else list(trees)[::-1]
            for side in sides:
                result = run_once(bootstrap, topic, count, n, timeout, trees[side], False)
                runs[side][n] = result
                c.log(f"{side} {n} instance(s): {result.get('supervisor_us_per_msg', 0)} µs/msg"
                      + (f" [{result['reason']}]" if result.get("reason") else ""))
        if not args.no_profile:
            for side in trees:
                profiles[side] = run_once(bootstrap, topic, count, headline, timeout,
                                          trees[side], True)
                c.log(f"{side} profiled run: {profiles[side].get('supervisor_us_per_msg', 0)} "
                      "µs/msg under py-spy")
    summary = report(count, counts, headline, runs, profiles)
    c.emit_json(summary)


def report(count: int, counts: list[int], headline: int,
           runs: dict[str, dict[int, dict[str, Any]]],
           profiles: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Print the tables; return the JSON summary (the candidate's figures at the top)."""
    print(f"\nsupervisor CPU per message, N = {count:,}, 8 partitions, null agent\n")
    rows = []
    for side, by_n in runs.items():
        for n, r in by_n.items():
            rows.append([side, n, r.get("supervisor_us_per_msg", 0.0),
                         r.get("main_thread_us_per_msg", 0.0),
                         r.get("other_threads_us_per_msg", 0.0),
                         round(1e6 / r["supervisor_us_per_msg"])
                         if r.get("supervisor_us_per_msg") else 0,
                         r.get("msg_s", 0), r.get("supervisor_busy_pct", 0.0),
                         r.get("main_thread_runq_pct", 0.0), r.get("reason") or "ok"])
    print(c.table(["tree", "instances", "µs/msg", "main thread", "other threads",
                   "ceiling msg/s", "msg/s", "busy %", "runq %", "note"], rows))
    mine = runs["candidate"]
    head = mine.get(headline, {})
    us = float(head.get("supervisor_us_per_msg", 0.0))
    summary: dict[str, Any] = {
        "bench": "ceiling", "count": count, "instances": headline,
        "supervisor_us_per_msg": us, "ceiling_msg_s": round(1e6 / us) if us else 0,
        "breakdown_us": {}, "cores": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}
    for n, r in mine.items():
        summary[f"supervisor_us_per_msg_{n}"] = r.get("supervisor_us_per_msg", 0.0)
    for side, profiled in profiles.items():
        print(f"\n{side}, {headline} instances under py-spy: "
              f"{profiled.get('supervisor_us_per_msg', 0)} µs/msg "
              f"({profiled.get('profile', {}).get('samples', 0)} samples)\n")
        # The clean run's thread split, the profiled run's shares.
        parts = breakdown({**runs[side].get(headline, {}), "profile": profiled.get("profile", {})})
        print(c.table(["part", "µs / message"], [[k, v] for k, v in parts.items()]))
        top = profiled.get("profile", {}).get("top_lines", [])
        if top:
            print("\nhottest lines (own samples, %)\n")
            print(c.table(["line", "%"], top))
        if side == "candidate":
            summary["breakdown_us"] = parts
            summary["profile_samples"] = profiled.get("profile", {}).get("samples", 0)
        else:
            summary[f"{side}_breakdown_us"] = parts
    if "baseline" in runs:
        for n, r in runs["baseline"].items():
            base = float(r.get("supervisor_us_per_msg", 0.0))
            summary[f"baseline_us_per_msg_{n}"] = base
            summary[f"candidate_vs_baseline_{n}"] = c.ratio(
                float(mine.get(n, {}).get("supervisor_us_per_msg", 0.0)), base)
    rows_p = projection(us)
    print(f"\nprojected host rate, msg/s (ceiling {summary['ceiling_msg_s']:,} msg/s at "
          f"{us} µs/msg; * = the supervisor is the bound)\n")
    print(projection_table(rows_p))
    print()
    summary["projection"] = rows_p
    summary["status_poll_us_per_msg"] = head.get("status_poll_us_per_msg", 0.0)
    reasons = {f"{side}_{n}": r["reason"] for side, by_n in runs.items()
               for n, r in by_n.items() if r.get("reason")}
    if reasons:
        summary["reasons"] = reasons
    return summary


if __name__ == "__main__":
    main()
