#!/usr/bin/env python3
"""Ask latency: ``adding.ask(Add(a, b))`` round trips, agentd vs Faust, one broker.

For each runtime the server side runs the same agent (``_ask_app.adding``: agentd via
``agentd start``, Faust via a faust-streaming worker), and a client process asks it
N times one after another (10,000; quick: 3,000; cut short after a third of the
timeout, and the count says so), then N times with 100 asks in flight.
Latency is the client's ``perf_counter`` around each ``await adding.ask(...)`` after
its warm-up (at least 50 asks and 2 s: ``_ask_client.WARM_UP_SECONDS``); p50/p99/p999
in ms. Producer batching delays are stated in the output: agentlib's ``linger.ms``
(request and reply each wait up to it) and Faust's ``producer_linger``.

A third row, ``echo``, is the floor: the same round trip with bare confluent-kafka on
both sides (``_ask_client.py echo-server``/``echo-client``), i.e. what the broker and
librdkafka cost with no runtime around them. ``--only`` runs some rows (experiments).

The rows are measured in :data:`ROUNDS` rounds, their order rotated each round, and
each row's latencies pooled over its rounds: a broker keeps speeding up for minutes
after start and a shared machine's load drifts, so a row measured in one piece was
flattered or penalised by its place in the run. Before the first round the broker
is warmed up with unmeasured echo traffic for a fixed time (:data:`WARM_UP_SECONDS`),
then with one unmeasured round of every row: a fresh JVM compiles its request paths
during the first minutes of traffic, and its compiler threads share the cores with
the contestants (measured on a fresh broker: first agentd run p50 3.9 ms, the next
two 1.5 and 1.4 ms).

agentd runs with its default ``commit_interval`` (1 s), as deployed; ``--commit-interval``
changes it. (The throughput bench uses 0.1 s so that its clock, which stops at the
last commit, stops promptly.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c

from supervisor.config.loader import Config

#: agentd's own default ``commit_interval``: the ask bench runs the daemon as deployed.
DEFAULT_COMMIT_INTERVAL = float(next(f.default for f in fields(Config)  # type: ignore[arg-type]
                                     if f.name == "commit_interval"))


def linger_ms() -> dict[str, float | None]:
    """Each side's producer batching delay, as its library configures it by default."""
    stated: dict[str, float | None] = {"agentd_linger_ms": None, "faust_linger_ms": None}
    try:
        from agentlib.kafka import LINGER_MS

        stated["agentd_linger_ms"] = float(LINGER_MS)
    except ImportError:
        pass
    try:
        import faust

        app = faust.App("bench-linger-probe", web_enabled=False)
        stated["faust_linger_ms"] = float(app.conf.producer_linger) * 1000
    except Exception:  # a stated fact, not part of the run
        pass
    return stated


def client(name: str, lib: str, bootstrap: str, topic: str, sequential: int, concurrent: int,
           timeout: float, app_id: str, tree: Path = c.REPO) -> c.Outcome:
    """The asking side, in its own process; ``tree``'s code first on its path after
    ``bench/`` (its ``agentlib`` is the client that asks)."""
    # The sequential phase may end early (a runtime at 200 ms per ask would need 2,000 s
    # for 10,000): it gets at most a third of the timeout, the rest is for start-up and
    # the concurrent phase.
    argv = [sys.executable, str(c.BENCH_DIR / "_ask_client.py"), "client",
            "--sequential", str(sequential), "--concurrent", str(concurrent), "--window", "100",
            "--phase-seconds", str(round(timeout / 3))]
    env = {"BENCH_ASK_LIB": lib, "BENCH_TOPIC": topic, "BENCH_APP_ID": app_id,
           "BENCH_BROKER": bootstrap, "AGENTD_BROKER": f"kafka://{bootstrap}",
           "PYTHONPATH": c.pythonpath(tree)}
    return c.run_child(name, argv, timeout, env=env, expect=concurrent)


def run_agentd(bootstrap: str, sequential: int, concurrent: int, timeout: float,
               commit_interval: float = DEFAULT_COMMIT_INTERVAL, *, tree: Path = c.REPO,
               name: str = "agentd") -> c.Outcome:
    """The agentd row: ``agentd start`` serving ``_ask_app`` and a client asking it, both
    running ``tree``'s code (default: this checkout; ``bench/trees.py`` runs two)."""
    missing = c.agentd_missing(tree)
    if missing:
        return c.Outcome(name, reason=missing)
    topic = c.create_topic(bootstrap, c.unique("bench-ask-agentd"))
    app_id = c.unique("bench-ask-agentd")
    env = {"BENCH_ASK_LIB": "agentlib", "BENCH_TOPIC": topic}
    settings = {"app": "_ask_app:app", "commit_interval": commit_interval}
    with c.Agentd(bootstrap, app_id, env, settings=settings, tree=tree) as daemon:
        time.sleep(1.0)
        why = daemon.exited()
        if why:
            return c.Outcome(name, reason=why)
        return client(name, "agentlib", bootstrap, topic, sequential, concurrent, timeout,
                      app_id, tree)


def run_faust(bootstrap: str, sequential: int, concurrent: int, timeout: float) -> c.Outcome:
    topic = c.create_topic(bootstrap, c.unique("bench-ask-faust"))
    app_id = c.unique("bench-ask-faust")
    env = {**os.environ, "BENCH_ASK_LIB": "faust", "BENCH_TOPIC": topic,
           "BENCH_APP_ID": app_id, "BENCH_BROKER": bootstrap, "PYTHONPATH": c.pythonpath()}
    with open("/dev/null", "wb") as devnull:
        worker = subprocess.Popen([sys.executable, str(c.BENCH_DIR / "_ask_client.py"), "worker"],
                                  env=env, cwd=c.REPO, stdout=devnull, stderr=devnull,
                                  start_new_session=True)
    try:
        return client("faust", "faust", bootstrap, topic, sequential, concurrent, timeout,
                      app_id)
    finally:
        c.kill_group(worker)


def run_echo(bootstrap: str, sequential: int, concurrent: int, timeout: float) -> c.Outcome:
    topic = c.create_topic(bootstrap, c.unique("bench-ask-echo"))
    c.create_topic(bootstrap, f"{topic}-replies", partitions=1)
    env = {**os.environ, "BENCH_TOPIC": topic, "BENCH_BROKER": bootstrap,
           "PYTHONPATH": c.pythonpath()}
    with open("/dev/null", "wb") as devnull:
        server = subprocess.Popen([sys.executable, str(c.BENCH_DIR / "_ask_client.py"),
                                   "echo-server"], env=env, cwd=c.REPO, stdout=devnull,
                                  stderr=devnull, start_new_session=True)
    try:
        argv = [sys.executable, str(c.BENCH_DIR / "_ask_client.py"), "echo-client",
                "--sequential", str(sequential), "--concurrent", str(concurrent),
                "--window", "100", "--phase-seconds", str(round(timeout / 3))]
        return c.run_child("echo", argv, timeout, env=env, expect=concurrent)
    finally:
        c.kill_group(server)


RUNTIMES = {"agentd": run_agentd, "faust": run_faust, "echo": run_echo}

#: Each row is measured in this many rounds, the order of the rows rotated every round,
#: and its latencies pooled: the broker keeps getting faster for minutes after start
#: (its JIT) and a shared machine's load drifts, so a row measured whole, first or last,
#: was flattered or penalised by its slot (measured: agentd p99 6.7 -> 4.1 ms over two
#: minutes on one fresh broker).
ROUNDS = 3

#: Seconds of unmeasured echo round trips before the first round (full run; quick: half).
#: A fixed time, not a count: a slow machine needs the same minutes of traffic before
#: its broker's request paths are compiled. (10,000-ask runs, agentd's p99/p50 per
#: round: after 30 s 3.37, 2.20, 2.24; after 60 s 2.74, 2.09, 2.17.)
WARM_UP_SECONDS = 60.0
WARM_UP_BATCH = 2_000
#: Then one unmeasured round of every row, this many asks per phase (quick: a third):
#: echo traffic alone left the paths only the runtimes use (group commits, their
#: clients' request versions) cold, and the first measured round paid for them
#: (agentd p99/p50 3.78 in round 1, then 2.37 and 2.80, in one 10,000-ask run).
WARM_UP_ROUND_ASKS = 900


def warm_up(bootstrap: str, seconds: float, timeout: float) -> int:
    """Echo round trips, unmeasured, until ``seconds`` have passed; returns how many."""
    asks = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        outcome = run_echo(bootstrap, WARM_UP_BATCH, WARM_UP_BATCH, timeout)
        if outcome.reason:
            c.log(f"broker warm-up stopped: {outcome.reason}")
            break
        asks += outcome.count + int(outcome.extra.get("sequential_count", 0))
    return asks


def split(count: int, rounds: int) -> list[int]:
    """``count`` asks over ``rounds`` rounds, as evenly as they go (the first rounds get
    the remainder)."""
    return [count // rounds + (turn < count % rounds) for turn in range(rounds)]


def pool(name: str, rounds: list[c.Outcome]) -> c.Outcome:
    """One row from its rounds: every latency pooled into one sample, the concurrent
    rate as all concurrent asks over all their seconds; any round's failure is the row's."""
    sequential = [x for o in rounds for x in o.extra.get("sequential_s", [])]
    concurrent = [x for o in rounds for x in o.extra.get("concurrent_s", [])]
    count = sum(o.count for o in rounds)
    seconds = sum(o.seconds for o in rounds)
    per_round = [c.ratio(o.extra["sequential"]["p99"], o.extra["sequential"]["p50"])
                 for o in rounds if o.extra.get("sequential")]
    return c.Outcome(
        name, msg_s=round(count / seconds) if seconds else 0.0, count=count, seconds=seconds,
        reason="; ".join(o.reason for o in rounds if o.reason),
        extra={"sequential": c.percentiles(sequential) if sequential else {},
               "concurrent": c.percentiles(concurrent) if concurrent else {},
               "sequential_count": len(sequential), "round_p99_over_p50": per_round})


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--count", type=int, default=None,
                     help="asks per phase, over all rounds (10k; quick 3k)")
    cli.add_argument("--only", action="append", choices=sorted(RUNTIMES),
                     help="run only this row (repeatable; default: all)")
    cli.add_argument("--commit-interval", type=float, default=DEFAULT_COMMIT_INTERVAL,
                     help=f"agentd's commit_interval (default: agentd's own, "
                          f"{DEFAULT_COMMIT_INTERVAL:g} s)")
    args = cli.parse_args()
    # quick: 1,000 a round, so that a round's p99 is its 10th-worst ask, not its 5th
    count = args.count or (3_000 if args.quick else 10_000)
    if count < ROUNDS:
        cli.error(f"--count must be at least {ROUNDS} (one ask per round)")
    per_round = split(count, ROUNDS)
    warm_round = WARM_UP_ROUND_ASKS // 3 if args.quick else WARM_UP_ROUND_ASKS
    timeout = args.timeout or (120.0 if args.quick else 400.0)
    names = [name for name in RUNTIMES if not args.only or name in args.only]
    measured: dict[str, list[c.Outcome]] = {name: [] for name in names}
    runners: dict[str, Callable[[str, int, int, float], c.Outcome]] = {
        **RUNTIMES, "agentd": partial(run_agentd, commit_interval=args.commit_interval)}
    with c.broker(args.bootstrap) as bootstrap:
        warm_seconds = WARM_UP_SECONDS / 2 if args.quick else WARM_UP_SECONDS
        warm_asks = warm_up(bootstrap, warm_seconds, timeout)
        c.log(f"broker warm-up: {warm_asks:,} echo asks in {warm_seconds:.0f} s")
        c.log(f"warm-up round, unmeasured: {', '.join(names)}")
        for name in names:
            runners[name](bootstrap, warm_round, warm_round, timeout)
        for turn in range(ROUNDS):
            order = names[turn % len(names):] + names[:turn % len(names)]
            c.log(f"round {turn + 1} of {ROUNDS}: {', '.join(order)}")
            asks = per_round[turn]
            for name in order:
                measured[name].append(runners[name](bootstrap, asks, asks, timeout))
    results = {name: pool(name, rounds) for name, rounds in measured.items()}
    stated = linger_ms()
    rows = []
    summary: dict[str, object] = {"bench": "ask", "count": count, "window": 100, **stated,
                                  "rounds": ROUNDS, "broker_warm_up_asks": warm_asks,
                                  "agentd_commit_interval_s": args.commit_interval}
    for name, outcome in results.items():
        seq = outcome.extra.get("sequential", {})
        conc = outcome.extra.get("concurrent", {})
        rows.append([name, outcome.extra.get("sequential_count", 0),
                     seq.get("p50", 0), seq.get("p99", 0), seq.get("p999", 0),
                     conc.get("p50", 0), conc.get("p99", 0), conc.get("p999", 0),
                     outcome.msg_s, outcome.reason or "ok"])
        for phase, values in (("seq", seq), ("conc", conc)):
            for pct in ("p50", "p99", "p999"):
                summary[f"{name}_{phase}_{pct}_ms"] = values.get(pct, 0.0)
        summary[f"{name}_conc_asks_s"] = outcome.msg_s
        summary[f"{name}_seq_count"] = outcome.extra.get("sequential_count", 0)
        summary[f"{name}_round_p99_over_p50"] = outcome.extra["round_p99_over_p50"]
    print(f"\nask latency (ms), {count:,} sequential then {count:,} at 100 in flight, in "
          f"{ROUNDS} rounds; linger.ms agentd={stated['agentd_linger_ms']} "
          f"faust={stated['faust_linger_ms']}; agentd commit_interval {args.commit_interval:g} s\n")
    print(c.table(["runtime", "seq asks", "seq p50", "seq p99", "seq p999", "100x p50", "100x p99",
                   "100x p999", "asks/s @100", "note"], rows))
    print()
    for key in ("agentd_seq_p50_ms", "agentd_seq_p99_ms", "faust_seq_p50_ms"):
        summary.setdefault(key, 0.0)  # a row left out by --only
    a_p50, f_p50 = summary["agentd_seq_p50_ms"], summary["faust_seq_p50_ms"]
    summary["agentd_vs_faust_p50"] = c.ratio(float(a_p50), float(f_p50))  # type: ignore[arg-type]
    summary["agentd_p99_over_p50"] = c.ratio(
        float(summary["agentd_seq_p99_ms"]), float(a_p50))  # type: ignore[arg-type]
    if "echo_seq_p50_ms" in summary:
        summary["echo_p99_over_p50"] = c.ratio(
            float(summary["echo_seq_p99_ms"]), float(summary["echo_seq_p50_ms"]))  # type: ignore[arg-type]
    reasons = {name: o.reason for name, o in results.items() if o.reason}
    if reasons:
        summary["reasons"] = reasons
    c.emit_json(summary)


if __name__ == "__main__":
    main()
