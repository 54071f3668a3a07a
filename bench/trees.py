#!/usr/bin/env python3
"""Two source trees' agentd side by side: throughput and ask latency, one broker, one run.

For "performance is unchanged" across a change: the ``agentd`` row of ``throughput.py``
(2 instances) and the ``agentd`` row of ``ask.py`` (sequential asks, then 100 in flight)
run once with each tree per round, on the same broker, the two trees' order swapped
every round (baseline first in odd rounds, candidate first in even ones), so a broker
that keeps speeding up or a machine whose load drifts favours neither. A tree is any
checkout with ``bin/agentd`` (e.g. ``git worktree add /tmp/base <commit>``); its
``bin/agentd`` runs the daemon and its code comes first on PYTHONPATH after this
checkout's ``bench/``, so the daemon, its zygote, the instances and the ask client all
run that tree's code, while the agent (``_agentd_app``, ``_ask_app``) and the harness
are this checkout's for both. Each run checks where its processes imported
``supervisor``/``agentlib`` from; a run that imported the other tree scores 0.

Throughput: one topic of N messages produced once; every run reads all of it in its
own consumer group; one unmeasured run per tree first. Per tree: each round's msg/s,
their median (the headline) and the pooled rate (all messages over all timed seconds).
Ask: the broker warm-up of ``ask.py`` (echo traffic, then one unmeasured round per
tree), then the rounds; each tree's latencies pooled over its rounds as ``ask.py``
does (the headline p50/p99), each round's own p50/p99 shown too. Ratios are
candidate/baseline: above 1 is faster for msg/s, slower for latency. Only ratios from
one run count.

Usage: ``bench/trees.py --baseline PATH [--candidate PATH] [--quick] [--rounds N]
[--what throughput,ask]``; the candidate defaults to this checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c
import ask

SIDES = ("baseline", "candidate")
WHAT = ("throughput", "ask")
INSTANCES = 2  # throughput.py's ``agentd`` row


# ---------------------------------------------------------------------------- the trees

def order(turn: int) -> tuple[str, ...]:
    """The sides' order in round ``turn`` (0-based): baseline first, then swapped each
    round, so over an even number of rounds each side's mean slot is the same."""
    return SIDES if turn % 2 == 0 else SIDES[::-1]


def alternate(rounds: int, run: Callable[[str, int], c.Outcome]) -> dict[str, list[c.Outcome]]:
    """``run(side, turn)`` for every round and side, in :func:`order`; outcomes per side."""
    results: dict[str, list[c.Outcome]] = {side: [] for side in SIDES}
    for turn in range(rounds):
        c.log(f"round {turn + 1} of {rounds}: {', '.join(order(turn))}")
        for side in order(turn):
            results[side].append(run(side, turn))
    return results


def git_facts(tree: Path) -> dict[str, Any]:
    """The tree's commit and whether it has changes on top (None where git cannot say).
    Read-only: ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status`` from refreshing the index."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    facts: dict[str, Any] = {"commit": None, "dirty": None}
    with contextlib.suppress(OSError):
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], env=env,
                              capture_output=True, text=True, check=False)
        if head.returncode == 0:
            facts["commit"] = head.stdout.strip()
            status = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"], env=env,
                                    capture_output=True, text=True, check=False)
            if status.returncode == 0:
                facts["dirty"] = bool(status.stdout.strip())
    return facts


def imports_from(tree: Path) -> dict[str, str]:
    """Where a process started as the bench starts the tree's processes (PYTHONPATH
    from ``c.pythonpath(tree)``, cwd elsewhere) finds ``supervisor`` and ``agentlib``."""
    code = ("import json, os, supervisor, agentlib; print(json.dumps({m.__name__: "
            "os.path.dirname(m.__file__) for m in (supervisor, agentlib)}))")
    with tempfile.TemporaryDirectory() as elsewhere:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False, cwd=elsewhere,
                              env={**os.environ, "PYTHONPATH": c.pythonpath(tree)})
    if done.returncode != 0:
        return {"error": " | ".join(done.stderr.strip().splitlines()[-2:])}
    return dict(json.loads(done.stdout))


def wrong_tree(found: dict[str, str], tree: Path) -> str:
    """Why ``found`` (module -> directory) is not all inside ``tree`` ("" when it is)."""
    root = Path(tree).resolve()
    wrong = []
    for module, where in sorted(found.items()):
        places = [Path(p.strip()) for p in where.split("|") if p.strip()]
        if not places or not all(p.resolve().is_relative_to(root) for p in places):
            wrong.append(f"{module} from {where or 'nowhere'}")
    return f"not {root}'s code: {', '.join(wrong)}" if wrong else ""


def checked(outcome: c.Outcome, found: dict[str, str], tree: Path) -> c.Outcome:
    """``outcome``, or a 0 with the reason if its processes ran another tree's code."""
    if not outcome.reason:
        why = wrong_tree(found, tree) if found else "its processes did not say what they ran"
        if why:
            return c.Outcome(outcome.name, count=outcome.count, reason=why, extra=outcome.extra)
    return outcome


# ---------------------------------------------------------------------------- arithmetic

def ratio(candidate: float, baseline: float) -> float:
    """candidate / baseline to 3 decimals (5% must show); 0 when either did not run."""
    return round(candidate / baseline, 3) if candidate > 0 and baseline > 0 else 0.0


def median(values: Sequence[float]) -> float:
    """The median of ``values``; 0 if there are none or any is 0 (a failed round fails
    the side, as in ``ask.pool``)."""
    if not values or any(v <= 0 for v in values):
        return 0.0
    return round(statistics.median(values), 3)


def pooled_rate(outcomes: Sequence[c.Outcome]) -> float:
    """All timed messages over all timed seconds (``from_result``'s ``count - 1`` per
    run); 0 if any round failed."""
    if not outcomes or any(o.reason or o.seconds <= 0 for o in outcomes):
        return 0.0
    return round(sum(o.count - 1 for o in outcomes) / sum(o.seconds for o in outcomes))


def note(outcomes: Sequence[c.Outcome]) -> str:
    reasons = [f"round {i + 1}: {o.reason}" for i, o in enumerate(outcomes) if o.reason]
    return "; ".join(reasons) or "ok"


def metric_rows(per_round: dict[str, list[float]], pooled: dict[str, float],
                notes: dict[str, str]) -> list[list[object]]:
    """Rows baseline, candidate, candidate/baseline: each round, the median, the pooled
    value, a note. The ratio row's rounds are each round's own ratio (same round, so
    the broker's age and the load were alike)."""
    rows: list[list[object]] = []
    for side in SIDES:
        values = per_round[side]
        rows.append([side, *(float(v) for v in values), float(median(values)),
                     float(pooled[side]), notes[side]])
    base, cand = per_round["baseline"], per_round["candidate"]
    ratios = [ratio(b, a) for a, b in zip(base, cand, strict=True)]
    rows.append(["candidate/baseline", *(f"{r:.3f}" for r in ratios),
                 f"{ratio(median(cand), median(base)):.3f}",
                 f"{ratio(pooled['candidate'], pooled['baseline']):.3f}", ""])
    return rows


def headers(first: str, rounds: int) -> list[str]:
    return [first, *(f"round {i + 1}" for i in range(rounds)), "median", "pooled", "note"]


def paired(per_round: dict[str, list[float]]) -> float:
    """The median of the per-round candidate/baseline ratios (0 if a round failed)."""
    ratios = [ratio(b, a) for a, b in zip(per_round["baseline"], per_round["candidate"],
                                          strict=True)]
    return median(ratios)


# ---------------------------------------------------------------------------- the benches

def throughput(bootstrap: str, trees: dict[str, Path], rounds: int, count: int,
               timeout: float) -> tuple[str, dict[str, Any]]:
    topic = c.create_topic(bootstrap, c.unique("bench-trees"))
    seconds = c.produce(bootstrap, topic, count)
    c.log(f"produced {count:,} messages to {topic} in {seconds:.1f} s")

    def run(side: str, _turn: int = 0) -> c.Outcome:
        outcome = c.run_agentd(side, bootstrap, topic, count, INSTANCES, timeout,
                               tree=trees[side])
        return checked(outcome, outcome.extra.get("modules", {}), trees[side])

    c.log("warm-up, unmeasured: one run of each tree")
    for side in SIDES:
        run(side)
    results = alternate(rounds, run)
    _delete_topic(bootstrap, topic)
    per_round = {side: [o.msg_s for o in results[side]] for side in SIDES}
    pooled = {side: float(pooled_rate(results[side])) for side in SIDES}
    notes = {side: note(results[side]) for side in SIDES}
    text = (f"agentd throughput (msg/s), {INSTANCES} instances, N = {count:,}, 8 partitions, "
            f"{rounds} rounds\n\n" + c.table(headers("msg/s", rounds),
                                               metric_rows(per_round, pooled, notes)))
    summary: dict[str, Any] = {"count": count}
    for side in SIDES:
        summary[f"{side}_msg_s"] = median(per_round[side])
        summary[f"{side}_msg_s_pooled"] = pooled[side]
        summary[f"{side}_msg_s_rounds"] = per_round[side]
    summary["throughput_ratio"] = ratio(summary["candidate_msg_s"], summary["baseline_msg_s"])
    summary["throughput_ratio_pooled"] = ratio(pooled["candidate"], pooled["baseline"])
    summary["throughput_ratio_paired"] = paired(per_round)
    return text, {**summary, **_reasons("throughput", results)}


def _delete_topic(bootstrap: str, topic: str) -> None:
    """Free the broker's tmpfs of the filled topic before the ask runs."""
    from confluent_kafka.admin import AdminClient

    with contextlib.suppress(Exception):
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])[topic].result(30)


def asks(bootstrap: str, trees: dict[str, Path], rounds: int, count: int, timeout: float,
         quick: bool, commit_interval: float) -> tuple[str, dict[str, Any]]:
    per_round = ask.split(count, rounds)

    def run(side: str, turn: int, asks_now: int | None = None) -> c.Outcome:
        n = asks_now if asks_now is not None else per_round[turn]
        outcome = ask.run_agentd(bootstrap, n, n, timeout, commit_interval, tree=trees[side],
                                 name=side)
        lib_dir = outcome.extra.get("lib_dir")
        return checked(outcome, {"agentlib": lib_dir} if lib_dir else {}, trees[side])

    warm_seconds = ask.WARM_UP_SECONDS / 2 if quick else ask.WARM_UP_SECONDS
    warm_asks = ask.warm_up(bootstrap, warm_seconds, timeout)
    c.log(f"broker warm-up: {warm_asks:,} echo asks in {warm_seconds:.0f} s")
    warm_round = ask.WARM_UP_ROUND_ASKS // 3 if quick else ask.WARM_UP_ROUND_ASKS
    c.log("warm-up round, unmeasured: one run of each tree")
    for side in SIDES:
        run(side, 0, warm_round)
    results = alternate(rounds, run)
    pooled = {side: ask.pool(side, results[side]) for side in SIDES}
    notes = {side: note(results[side]) for side in SIDES}
    texts = []
    summary: dict[str, Any] = {"asks": count, "agentd_commit_interval_s": commit_interval,
                               "broker_warm_up_asks": warm_asks}
    for pct in ("p50", "p99"):
        rounds_ms = {side: [float(o.extra.get("sequential", {}).get(pct, 0.0))
                            if not o.reason else 0.0 for o in results[side]]
                     for side in SIDES}
        pooled_ms = {side: float(pooled[side].extra["sequential"].get(pct, 0.0))
                     if not pooled[side].reason else 0.0 for side in SIDES}
        texts.append(f"agentd sequential ask {pct} (ms), {count:,} asks per tree in {rounds} "
                     f"rounds, pooled over the rounds\n\n"
                     + c.table(headers(f"ask {pct}", rounds),
                               metric_rows(rounds_ms, pooled_ms, notes)))
        for side in SIDES:
            summary[f"{side}_ask_{pct}_ms"] = pooled_ms[side]
            summary[f"{side}_ask_{pct}_ms_rounds"] = rounds_ms[side]
        summary[f"ask_{pct}_ratio"] = ratio(pooled_ms["candidate"], pooled_ms["baseline"])
        summary[f"ask_{pct}_ratio_paired"] = paired(rounds_ms)
    for side in SIDES:
        conc = pooled[side].extra.get("concurrent", {}) if not pooled[side].reason else {}
        summary[f"{side}_conc_p50_ms"] = conc.get("p50", 0.0)
        summary[f"{side}_conc_asks_s"] = pooled[side].msg_s if not pooled[side].reason else 0.0
    summary["ask_conc_rate_ratio"] = ratio(summary["candidate_conc_asks_s"],
                                           summary["baseline_conc_asks_s"])
    return "\n\n".join(texts), {**summary, **_reasons("ask", results)}


def _reasons(what: str, results: dict[str, list[c.Outcome]]) -> dict[str, Any]:
    reasons = {f"{what}_{side}": note(outcomes) for side, outcomes in results.items()
               if note(outcomes) != "ok"}
    return {"reasons": reasons} if reasons else {}


# ---------------------------------------------------------------------------- main

#: Keys every run's JSON line has, 0 where ``--what`` left a bench out.
HEADLINE = ("baseline_msg_s", "candidate_msg_s", "throughput_ratio", "baseline_ask_p50_ms",
            "candidate_ask_p50_ms", "ask_p50_ratio", "baseline_ask_p99_ms",
            "candidate_ask_p99_ms", "ask_p99_ratio")


def main() -> None:
    cli = c.parser(__doc__.splitlines()[0])
    cli.add_argument("--baseline", type=Path, required=True,
                     help="the tree to compare against (a checkout with bin/agentd)")
    cli.add_argument("--candidate", type=Path, default=c.REPO,
                     help=f"the tree under test (default: this checkout, {c.REPO})")
    cli.add_argument("--what", default=",".join(WHAT),
                     help="comma-separated: throughput, ask (default: both)")
    cli.add_argument("--rounds", type=int, default=None, help="rounds (default 6; quick 4)")
    cli.add_argument("--count", type=int, default=None,
                     help="throughput: messages in the topic (default 1M; quick 200k)")
    cli.add_argument("--asks", type=int, default=None,
                     help="ask: asks per phase and tree, over all rounds (12k; quick 4k)")
    cli.add_argument("--commit-interval", type=float, default=ask.DEFAULT_COMMIT_INTERVAL,
                     help="ask: agentd's commit_interval for both trees (default: this "
                          f"checkout's default, {ask.DEFAULT_COMMIT_INTERVAL:g} s)")
    args = cli.parse_args()
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    if not what or any(w not in WHAT for w in what):
        cli.error(f"--what takes a comma-separated subset of {', '.join(WHAT)}")
    rounds = args.rounds or (4 if args.quick else 6)
    count = args.count or (200_000 if args.quick else 1_000_000)
    ask_count = args.asks or (4_000 if args.quick else 12_000)
    if rounds < 1 or ask_count < rounds:
        cli.error("--rounds must be at least 1 and --asks at least --rounds")
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    facts: dict[str, Any] = {"bench": "trees", "rounds": rounds}
    for side, tree in trees.items():
        if not (tree / "bin" / "agentd").is_file():
            cli.error(f"--{side} {tree}: no bin/agentd there")
        found = imports_from(tree)
        why = found.get("error") or wrong_tree(found, tree)
        if why:
            cli.error(f"--{side} {tree}: {why}")
        missing = c.agentd_missing(tree)
        if missing:
            cli.error(f"--{side} {tree}: {missing}")
        git = git_facts(tree)
        facts.update({f"{side}_tree": str(tree), f"{side}_commit": git["commit"],
                      f"{side}_dirty": git["dirty"]})
        c.log(f"{side}: {tree} at {git['commit'] or '?'}"
              + (" with uncommitted changes" if git["dirty"] else ""))
    texts: list[str] = []
    summary: dict[str, Any] = dict(facts)
    reasons: dict[str, str] = {}
    with c.broker(args.bootstrap) as bootstrap:
        if "throughput" in what:
            text, part = throughput(bootstrap, trees, rounds, count,
                                    args.timeout or (90.0 if args.quick else 600.0))
            reasons.update(part.pop("reasons", {}))
            texts.append(text)
            summary.update(part)
        if "ask" in what:
            text, part = asks(bootstrap, trees, rounds, ask_count,
                              args.timeout or (120.0 if args.quick else 400.0), args.quick,
                              args.commit_interval)
            reasons.update(part.pop("reasons", {}))
            texts.append(text)
            summary.update(part)
    for key in HEADLINE:
        summary.setdefault(key, 0.0)
    if reasons:
        summary["reasons"] = reasons
    print("\nbaseline: " + _tree_line(facts, "baseline"))
    print("candidate: " + _tree_line(facts, "candidate") + "\n")
    for text in texts:
        print(text + "\n")
    c.emit_json(summary)


def _tree_line(facts: dict[str, Any], side: str) -> str:
    commit = facts[f"{side}_commit"]
    return (f"{facts[f'{side}_tree']} at {commit[:10] if commit else '?'}"
            + (" + uncommitted changes" if facts[f"{side}_dirty"] else ""))


if __name__ == "__main__":
    main()
