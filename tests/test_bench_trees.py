"""bench/trees.py's own logic: the alternation, the arithmetic, which tree a process ran.

No timing is asserted and no broker is started: made-up outcomes go in, and a fake
tree checks that the harness's PYTHONPATH makes a process import that tree's code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import ask as ask_bench  # noqa: E402
import trees  # noqa: E402


def _run(msg_s: float, seconds: float = 1.0, count: int = 1001, reason: str = ""):
    return _common.Outcome("x", msg_s=msg_s, count=count, seconds=seconds, reason=reason)


def test_the_trees_swap_places_every_round():
    calls: list[tuple[str, int]] = []

    def run(side: str, turn: int):
        calls.append((side, turn))
        return _run(1.0)

    results = trees.alternate(4, run)
    assert calls == [("baseline", 0), ("candidate", 0), ("candidate", 1), ("baseline", 1),
                     ("baseline", 2), ("candidate", 2), ("candidate", 3), ("baseline", 3)]
    assert {side: len(outcomes) for side, outcomes in results.items()} == {
        "baseline": 4, "candidate": 4}
    # Over an even number of rounds each side's mean slot is the same.
    slots = {"baseline": [], "candidate": []}
    for slot, (side, _) in enumerate(calls):
        slots[side].append(slot)
    assert sum(slots["baseline"]) == sum(slots["candidate"])


def test_ratio_keeps_three_decimals_and_is_zero_when_a_side_did_not_run():
    assert trees.ratio(96.0, 100.0) == 0.96
    assert trees.ratio(1.0, 3.0) == 0.333
    assert trees.ratio(0.0, 100.0) == 0.0
    assert trees.ratio(100.0, 0.0) == 0.0


def test_a_failed_round_fails_the_median():
    assert trees.median([3.0, 1.0, 2.0]) == 2.0
    assert trees.median([1.0, 2.0]) == 1.5
    assert trees.median([1.0, 0.0, 2.0]) == 0.0
    assert trees.median([]) == 0.0


def test_pooled_rate_is_all_timed_messages_over_all_timed_seconds():
    # 1,000 timed messages in 1 s and 1,000 in 4 s: 400 msg/s, not the mean 625.
    assert trees.pooled_rate([_run(1000.0, 1.0), _run(250.0, 4.0)]) == 400
    assert trees.pooled_rate([_run(1000.0, 1.0), _run(0.0, 0.0, reason="hung")]) == 0


def test_rows_are_baseline_candidate_and_their_ratio_per_round():
    per_round = {"baseline": [100.0, 200.0], "candidate": [110.0, 180.0]}
    rows = trees.metric_rows(per_round, {"baseline": 150.0, "candidate": 145.0},
                             {"baseline": "ok", "candidate": "ok"})
    assert rows[0] == ["baseline", 100.0, 200.0, 150.0, 150.0, "ok"]
    assert rows[1] == ["candidate", 110.0, 180.0, 145.0, 145.0, "ok"]
    assert rows[2] == ["candidate/baseline", "1.100", "0.900", "0.967", "0.967", ""]
    assert trees.paired(per_round) == 1.0  # the median of 1.1 and 0.9
    text = _common.table(trees.headers("msg/s", 2), rows)
    assert "| round 2 |" in text.splitlines()[0].replace("  ", " ")


def test_asks_split_over_the_rounds_add_up():
    assert ask_bench.split(10, 4) == [3, 3, 2, 2]
    assert sum(ask_bench.split(12_000, 6)) == 12_000


def test_code_from_outside_the_tree_is_named(tmp_path):
    tree = tmp_path / "tree"
    assert trees.wrong_tree({"supervisor": str(tree / "supervisor")}, tree) == ""
    assert trees.wrong_tree({"agentlib": f"{tree}/agentlib | {tree}/agentlib"}, tree) == ""
    why = trees.wrong_tree({"supervisor": str(tree / "supervisor"),
                            "agentlib": "/elsewhere/agentlib"}, tree)
    assert "agentlib from /elsewhere/agentlib" in why
    assert "supervisor" not in why
    assert "nowhere" in trees.wrong_tree({"supervisor": ""}, tree)


def test_a_run_of_the_wrong_tree_scores_zero(tmp_path):
    good = _run(1000.0)
    assert trees.checked(good, {"agentlib": str(tmp_path / "agentlib")}, tmp_path) is good
    bad = trees.checked(good, {"agentlib": "/elsewhere/agentlib"}, tmp_path)
    assert bad.msg_s == 0.0 and "not" in bad.reason
    assert "did not say" in trees.checked(good, {}, tmp_path).reason
    failed = _run(0.0, reason="hung")
    assert trees.checked(failed, {}, tmp_path) is failed  # its own reason stays


def test_module_marks_gather_every_process_file(tmp_path):
    (tmp_path / "modules-1").write_text(json.dumps({"supervisor": "/t/supervisor",
                                                    "agentlib": "/t/agentlib"}))
    (tmp_path / "modules-2").write_text(json.dumps({"agentlib": "/u/agentlib"}))
    (tmp_path / "modules-3.tmp").write_text("{not json")
    assert _common.module_marks(tmp_path) == {"agentlib": "/t/agentlib | /u/agentlib",
                                              "supervisor": "/t/supervisor"}
    assert _common.module_marks(tmp_path / "none") == {}


def test_a_tree_on_the_bench_path_is_the_code_its_processes_import(tmp_path):
    tree = tmp_path / "tree"
    for package in ("supervisor", "agentlib"):
        (tree / package).mkdir(parents=True)
        (tree / package / "__init__.py").write_text("")
    path = _common.pythonpath(tree).split(":")
    assert path[:2] == [str(BENCH), str(tree)]
    assert _common.agentd_command(tree)[1:] == [str(tree / "bin" / "agentd")]
    assert _common.agentd_command() == _common.AGENTD
    found = trees.imports_from(tree)
    assert found == {"supervisor": str(tree / "supervisor"), "agentlib": str(tree / "agentlib")}
    assert trees.wrong_tree(found, tree) == ""
    assert trees.wrong_tree(trees.imports_from(_common.REPO), _common.REPO) == ""
