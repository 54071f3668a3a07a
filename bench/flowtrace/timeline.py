#!/usr/bin/env python3
"""One traced run of ``bench/flow.py`` as a timeline: per 100 ms of its timed window,
messages dispatched, time the supervisor's consume waited with nothing to hand out,
partitions paused, each instance's ring fill and backlog, and the pauses (P),
resumes (R) and fetcher wake-ups (W) in it.

Usage: ``bench/flowtrace/timeline.py FLOW_OUTPUT SIDE ROUND [BIN_SECONDS]``, with
FLOW_OUTPUT the file holding ``flow.py``'s output (its last line is read).
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    result = json.loads(Path(sys.argv[1]).read_text().strip().splitlines()[-1])
    run = result["results"][sys.argv[2]][int(sys.argv[3])]
    width = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
    path = glob.glob(os.path.join(run["trace_dir"], "trace-*.json"))[0]
    events = json.loads(Path(path).read_text())
    wall0, _, mono0 = events[0]
    start, stop = run["first"] + mono0 - wall0, run["last"] + mono0 - wall0
    paused = 0
    bins: dict[int, dict[str, Any]] = {}
    for event in events[1:]:
        at, kind = event[0], event[1]
        if kind == "P":
            paused += event[6]
        elif kind == "R":
            paused -= event[6]
        if not start <= at <= stop:
            continue
        row = bins.setdefault(int((at - start) / width),
                              {"msgs": 0, "wait": 0.0, "paused": 0, "fill": None, "what": ""})
        row["paused"] = max(row["paused"], paused)
        if kind == "D":
            row["msgs"] += event[2]
            row["fill"] = event[4]
        elif kind == "F" and not event[3]:
            row["wait"] += event[4]
        elif kind in ("P", "R"):
            row["what"] += f"{kind}{event[2]}(backlog {event[3]}, {event[4] // 1000} kB) "
        elif kind == "W":
            row["what"] += f"W{event[3]} "
    for index in sorted(bins):
        row = bins[index]
        fill = " ".join(f"{used / 1e6:.1f}MB/{backlog}" for backlog, _b, used in row["fill"]) \
            if row["fill"] else "-"
        print(f"{index * width:5.1f}s msgs {row['msgs']:6d} idle {row['wait'] * 1000:4.0f} ms "
              f"paused {row['paused']} ring/backlog {fill:24s} {row['what']}")


if __name__ == "__main__":
    main()
