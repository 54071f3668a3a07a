"""``bench/eos.py``'s arithmetic: what a read_committed reader's ids say (lost,
duplicated, foreign) and the JSON line (the issue's keys, ratios, targets). Made-up
outcomes only: no timing is asserted."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import eos  # noqa: E402


def test_every_input_once_is_exact():
    assert eos.exactness(Counter(range(5)), 5) == {"exact": True, "lost": 0, "duplicates": 0,
                                                   "foreign": 0}


def test_a_lost_a_duplicated_and_a_foreign_id_each_show():
    seen = Counter([0, 1, 1, 1, 3, 9])
    assert eos.exactness(seen, 5) == {"exact": False, "lost": 2, "duplicates": 2, "foreign": 1}
    assert not eos.exactness(Counter(), 1)["exact"]


def outcomes(eos_rate: float, alo: float, quix: float, exact: bool = True,
             duplicates: int = 0) -> dict[str, _common.Outcome]:
    seen = {"exact": exact, "lost": 0, "duplicates": duplicates}
    return {"agentd_alo": _common.Outcome("agentd_alo", alo, extra={"exact": True}),
            "agentd_eos": _common.Outcome("agentd_eos", eos_rate, extra=seen),
            "quix_eos": _common.Outcome("quix_eos", quix)}


def test_the_json_line_has_the_issue_keys_and_the_ratios():
    out = eos.summary(outcomes(90_000, 120_000, 30_000), count=1000, eos_interval=0.5)
    assert (out["agentd_eos_msg_s"], out["agentd_alo_msg_s"], out["quix_eos_msg_s"]) == (
        90_000, 120_000, 30_000)
    assert out["agentd_eos_vs_quix_eos"] == 3.0 and out["eos_vs_alo"] == 0.75
    assert out["agentd_eos_exact"] is True and out["agentd_alo_exact"] is True
    assert out["eos_commit_interval_s"] == 0.5
    assert out["targets_met"] == {"agentd_eos_vs_quix_eos": True, "eos_vs_alo": True}
    assert "reasons" not in out and "eos_interval_sweep" not in out
    json.dumps(out)


def test_missed_floors_duplicates_and_a_failed_contestant_show():
    results = outcomes(50_000, 100_000, 0.0, exact=False, duplicates=7)
    results["quix_eos"].reason = "hung: no result within 180 s"
    out = eos.summary(results, count=1000, eos_interval=1.0)
    assert out["agentd_eos_vs_quix_eos"] == 0.0 and out["eos_vs_alo"] == 0.5
    assert out["agentd_eos_exact"] is False and out["agentd_eos_duplicates"] == 7
    assert out["targets_met"] == {"agentd_eos_vs_quix_eos": False, "eos_vs_alo": False}
    assert out["reasons"] == {"quix_eos": "hung: no result within 180 s"}


def test_a_run_without_agentd_eos_is_not_called_exact():
    results = outcomes(1.0, 1.0, 1.0)
    del results["agentd_eos"]
    out = eos.summary(results, count=10, eos_interval=0.5)
    assert out["agentd_eos_exact"] is False and out["agentd_eos_msg_s"] == 0.0
    assert out["eos_vs_alo"] == 0.0


def test_the_sweep_lists_each_interval_with_its_rate_and_exactness():
    sweep = {0.1: _common.Outcome("agentd_eos_0.1s", 40_000, extra={"exact": True}),
             1.0: _common.Outcome("agentd_eos_1s", reason="hung: 10 of 1000 committed")}
    out = eos.summary(outcomes(1.0, 1.0, 1.0), count=10, eos_interval=0.5, sweep=sweep)
    assert out["eos_interval_sweep"] == {"0.1": {"msg_s": 40_000, "exact": True},
                                         "1": {"msg_s": 0.0, "exact": False}}
    assert out["reasons"] == {"agentd_eos_1s": "hung: 10 of 1000 committed"}


def test_intervals_parse_and_a_non_positive_one_is_refused():
    assert eos.parse_intervals("0.1, 0.5,1") == [0.1, 0.5, 1.0]
    assert eos.parse_intervals("") == []
    with pytest.raises(ValueError, match="> 0"):
        eos.parse_intervals("0.5,0")


def test_each_contestant_leads_one_round_in_turn():
    names = ["a", "b", "c"]
    assert [eos.rotated(names, turn) for turn in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_the_row_is_the_median_round_and_exact_only_if_every_round_was():
    rounds = [_common.Outcome("agentd_eos", rate, count=10, seconds=secs,
                              extra={"exact": exact, "lost": 0, "duplicates": dup})
              for rate, secs, exact, dup in ((30_000, 1.0, True, 0), (10_000, 3.0, False, 4),
                                             (20_000, 2.0, True, 0))]
    row = eos.median_round("agentd_eos", rounds)
    assert (row.msg_s, row.seconds, row.reason) == (20_000, 2.0, "")
    assert row.extra["rounds_msg_s"] == [30_000, 10_000, 20_000]
    assert row.extra["exact"] is False and row.extra["duplicates"] == 4
    out = eos.summary({"agentd_eos": row}, count=10, eos_interval=1.0)
    assert out["agentd_eos_rounds_msg_s"] == [30_000, 10_000, 20_000]
    assert out["agentd_eos_exact"] is False


def test_a_failed_round_is_named_and_a_failed_median_carries_every_reason():
    ok = _common.Outcome("quix_eos", 40_000, count=10, seconds=1.0)
    hung = _common.Outcome("quix_eos", reason="hung: no result within 180 s")
    row = eos.median_round("quix_eos", [ok, hung, ok])
    assert row.msg_s == 40_000 and row.reason == ""
    assert row.extra["failed_rounds"] == ["round 2: hung: no result within 180 s"]
    out = eos.summary({"quix_eos": row}, count=10, eos_interval=1.0)
    assert out["reasons"] == {"quix_eos_failed_rounds": "round 2: hung: no result within 180 s"}
    assert "exact" not in row.extra  # Quix's output is not read back
    row = eos.median_round("quix_eos", [hung, hung, ok])
    assert row.msg_s == 0.0 and row.reason.count("hung") == 2


def test_a_baseline_trees_run_shows_with_its_ratio_and_exactness():
    results = outcomes(90_000, 120_000, 30_000)
    results[eos.BASE] = _common.Outcome(eos.BASE, 60_000, extra={"exact": False})
    out = eos.summary(results, count=1000, eos_interval=1.0)
    assert out["agentd_eos_base_msg_s"] == 60_000 and out["agentd_eos_vs_base"] == 1.5
    assert out["agentd_eos_base_exact"] is False and out["agentd_eos_exact"] is True
    assert "agentd_eos_base_msg_s" not in eos.summary(outcomes(1, 1, 1), count=1,
                                                      eos_interval=1.0)
