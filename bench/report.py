#!/usr/bin/env python3
"""Report: run the quick set of benches on one broker, write a dated markdown page + plots.

Runs ``throughput``, ``scaling``, ``ask``, ``memory``, ``reload``, ``ceiling``, ``tables`` and
``eos`` with ``--quick`` (or in full with ``--full``), each as its own process against one
``DevBroker`` started here, and writes ``bench/results/<YYYY-MM-DD>.md``: machine facts (cores, CPU
model, versions), each script's table and final JSON line, and PNG plots (matplotlib)
of throughput per contestant and of scaling. The README's benchmark link is pointed at
the new page. Last line: one JSON object with every script's summary.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _common as c

SCRIPTS = ("throughput", "scaling", "ask", "memory", "reload", "ceiling", "tables", "eos")
RESULTS = c.BENCH_DIR / "results"
README_MARK = re.compile(r"(<!-- bench-latest -->).*?(<!-- /bench-latest -->)", re.S)


def run_script(name: str, bootstrap: str, quick: bool,
               timeout: float) -> tuple[str, dict[str, Any]]:
    """Run ``bench/<name>.py``; return its stdout (table) and its last JSON line."""
    argv = [sys.executable, str(c.BENCH_DIR / f"{name}.py"), "--bootstrap", bootstrap]
    if quick:
        argv.append("--quick")
    c.log(f"running {name}.py{' --quick' if quick else ''}")
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=c.REPO,
                              check=False)
    except subprocess.TimeoutExpired:
        return "", {"bench": name, "reason": f"did not finish within {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    summary: dict[str, Any] = {"bench": name, "reason": f"exit {done.returncode}, no JSON line: "
                               + " | ".join(done.stderr.strip().splitlines()[-2:])[-300:]}
    if lines:
        try:
            summary = json.loads(lines[-1])
            lines = lines[:-1]
        except ValueError:
            pass
    c.log(f"{name}.py done in {time.monotonic() - started:.0f} s")
    return "\n".join(lines).strip(), summary


def plot_throughput(summary: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["bare", "bare_tuned", "faust", "quix", "arroyo_mp", "arroyo_single", "agentd_1",
             "agentd"]
    labels = ["bare loop", "bare, agentd's\nconsumer tuning", "Faust", "Quix Streams",
              "arroyo 2 procs", "arroyo RunTask", "agentd 1 inst", "agentd 2 inst"]
    values = [float(summary.get(f"{n}_msg_s", 0) or 0) for n in names]
    if not any(values):
        return False
    fig, ax = plt.subplots(figsize=(9, 4))
    colors = ["#888888", "#bbbbbb", "#d62728", "#1f77b4", "#9467bd", "#8c564b", "#2ca02c",
              "#2ca02c"]
    bars = ax.bar(labels, values, color=colors)
    ax.bar_label(bars, labels=[f"{v / 1000:.1f}k" if v else "n/a" for v in values], fontsize=8)
    ax.set_ylabel("messages / s")
    ax.set_title(f"Throughput, N = {summary.get('count', 0):,}, trivial JSON agent, 8 partitions")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_scaling(summary: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agentd = sorted((int(k.split("_")[1]), float(v)) for k, v in summary.items()
                    if re.fullmatch(r"agentd_\d+_msg_s", k))
    if not agentd or not any(v for _, v in agentd):
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([n for n, _ in agentd], [v for _, v in agentd], "o-", color="#2ca02c",
            label="agentd instances")
    base = agentd[0][1]
    if base:
        ax.plot([n for n, _ in agentd], [base * n for n, _ in agentd], ":", color="#2ca02c",
                alpha=0.5, label="linear")
    styles = {"faust_1": ("Faust concurrency 1", "#d62728", "--"),
              "quix": ("Quix Streams", "#1f77b4", "-.")}
    for key, (label, color, style) in styles.items():
        value = float(summary.get(f"{key}_msg_s", 0) or 0)
        if value:
            ax.axhline(value, color=color, linestyle=style, label=label)
    for key, value in summary.items():
        if re.fullmatch(r"faust_c\d+_msg_s", key) and value:
            ax.axhline(float(value), color="#ff7f0e", linestyle="--",
                       label=f"Faust concurrency {key.split('_')[1][1:]}")
    ax.set_xlabel("instances")
    ax.set_ylabel("messages / s")
    ax.set_title(f"Scaling, {summary.get('work_us', 200):.0f} µs of Python per message")
    ax.set_xticks([n for n, _ in agentd])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_page(day: str, facts: dict[str, Any], outputs: dict[str, tuple[str, dict[str, Any]]],
               plots: list[str], quick: bool) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    page = RESULTS / f"{day}.md"
    lines = [f"# agentd benchmarks, {day}", "",
             f"`bench/report.py{'' if quick else ' --full'}`: every script "
             f"{'with `--quick`' if quick else 'in full'}, one after another, against one "
             "real Kafka broker (`DevBroker`) on this machine. Only ratios from one run count: "
             "absolute rates drift between runs on shared machines.", "",
             "## Machine", "", c.table(["fact", "value"], [[k, v] for k, v in facts.items()]), ""]
    lines += [f"![{name}]({name})" for name in plots] + [""]
    for name, (text, summary) in outputs.items():
        lines += [f"## {name}", "", "```", text or "(no table)", "", json.dumps(summary), "```", ""]
    page.write_text("\n".join(lines))
    return page


def link_readme(page: Path) -> None:
    """Point the README's benchmark link (between the bench-latest markers) at ``page``."""
    readme = c.REPO / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    relative = page.relative_to(c.REPO).as_posix()
    link = f"Latest results: [{relative}]({relative})."
    if README_MARK.search(text):
        text = README_MARK.sub(lambda m: f"{m.group(1)}{link}{m.group(2)}", text)
        readme.write_text(text)


def main() -> None:
    cli = c.parser(__doc__.splitlines()[1])
    cli.add_argument("--full", action="store_true", help="full runs instead of --quick")
    cli.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated scripts")
    args = cli.parse_args()
    quick = not args.full
    day = datetime.date.today().isoformat()
    outputs: dict[str, tuple[str, dict[str, Any]]] = {}
    with c.broker(args.bootstrap) as bootstrap:
        for name in [s for s in SCRIPTS if s in args.only.split(",")]:
            outputs[name] = run_script(name, bootstrap, quick, 600.0 if quick else 1500.0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    facts = c.machine_facts()
    facts.update(c.peer_versions())
    plots = []
    if "throughput" in outputs and plot_throughput(outputs["throughput"][1],
                                                   RESULTS / f"{day}-throughput.png"):
        plots.append(f"{day}-throughput.png")
    if "scaling" in outputs and plot_scaling(outputs["scaling"][1],
                                             RESULTS / f"{day}-scaling.png"):
        plots.append(f"{day}-scaling.png")
    page = write_page(day, facts, outputs, plots, quick)
    link_readme(page)
    for name, (text, summary) in outputs.items():
        print(f"## {name}\n\n{text}\n\n{json.dumps(summary)}\n")
    c.log(f"wrote {page.relative_to(c.REPO)} and {len(plots)} plot(s)")
    c.emit_json({"bench": "report", "page": str(page.relative_to(c.REPO)), "plots": plots,
                 **{name: summary for name, (_, summary) in outputs.items()}})


if __name__ == "__main__":
    main()
