"""``bench/tables.py``'s arithmetic: the counts agentd must hold, the changelog it
rebuilds, and the JSON line (keys, ratios, targets). Made-up outcomes only: no timing
is asserted."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import tables  # noqa: E402

from agentlib.tables.changelog import MARK_HEADER, decode_mark  # noqa: E402


def test_expected_counts_are_what_produce_writes_per_key():
    produced = Counter(_common.key_of(i, 7).decode() for i in range(100))
    assert tables.expected_counts(100, 7) == dict(produced)
    assert sum(tables.expected_counts(1_000_003).values()) == 1_000_003
    assert len(tables.expected_counts(1_000_003)) == tables.KEYS


def test_the_changelog_rows_are_distinct_marked_and_spread_over_the_partitions():
    rows = list(tables.changelog_rows(80, "src", partitions=8))
    assert len({key for key, _, _, _ in rows}) == 80  # compaction keeps every row
    assert Counter(partition for _, _, partition, _ in rows) == {p: 10 for p in range(8)}
    key, value, partition, headers = rows[17]
    assert json.loads(key) == "r0000017" and json.loads(value) == 1 and partition == 1
    assert headers is not None and headers[0][0] == MARK_HEADER
    assert decode_mark(headers[0][1]) == ("src", (2, 0))  # the 3rd record of partition 1


def outcomes(agentd: float, faust: float, quix: float, recovery: float,
             exact: bool = True) -> dict[str, _common.Outcome]:
    return {"agentd": _common.Outcome("agentd", agentd, extra={"counts_exact": exact}),
            "faust": _common.Outcome("faust", faust),
            "quix": _common.Outcome("quix", quix),
            "recovery": _common.Outcome("recovery", recovery, count=1000, seconds=0.004)}


def test_the_json_line_has_the_issue_keys_and_the_ratios():
    out = tables.summary(outcomes(300_000, 10_000, 150_000, 250_000), count=1000,
                         faust_count=100, rows=1000, store="memory://")
    assert out["agentd_tables_msg_s"] == 300_000 and out["quix_state_msg_s"] == 150_000
    assert out["agentd_vs_faust_tables"] == 30.0 and out["agentd_vs_quix_state"] == 2.0
    assert out["recovery_rows_s"] == 250_000 and out["recovery_seconds"] == 0.004
    assert out["agentd_counts_exact"] is True
    assert (out["faust_store"], out["faust_count"]) == ("memory://", 100)
    assert out["targets_met"] == {"agentd_vs_quix_state": True, "agentd_vs_faust_tables": True,
                                  "recovery_rows_s": True}
    assert "reasons" not in out
    json.dumps(out)


def test_a_missed_floor_a_wrong_count_and_a_failed_contestant_show():
    results = outcomes(100_000, 10_000, 0.0, 150_000, exact=False)
    results["quix"].reason = "hung: no result within 90 s"
    out = tables.summary(results, count=1000, faust_count=100, rows=1000, store="rocksdb://")
    assert out["agentd_vs_quix_state"] == 0.0 and out["agentd_counts_exact"] is False
    assert out["targets_met"] == {"agentd_vs_quix_state": False,
                                  "agentd_vs_faust_tables": False, "recovery_rows_s": False}
    assert out["reasons"] == {"quix": "hung: no result within 90 s"}


def test_a_run_without_agentd_is_not_called_exact():
    results = outcomes(1.0, 1.0, 1.0, 1.0)
    del results["agentd"]
    out = tables.summary(results, count=10, faust_count=10, rows=10, store="memory://")
    assert out["agentd_counts_exact"] is False and out["agentd_tables_msg_s"] == 0.0
