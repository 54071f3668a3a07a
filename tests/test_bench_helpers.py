"""The bench harness's own arithmetic: result lines, rates, reload accounting.

No timing is asserted: these feed the harness made-up timestamps and check what it
computes from them (a wrong loss count or rate formula would mislead every report).
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import reload as reload_bench  # noqa: E402


def test_result_line_is_found_behind_terminal_escape_codes():
    stdout = 'log line\n\x1b[?25l\x1b[?25h{"result": {"first": 1.0, "last": 3.0, "count": 5}}\n'
    assert _common._last_result(stdout) == {"first": 1.0, "last": 3.0, "count": 5}


def test_rate_counts_from_first_to_nth_message():
    outcome = _common.from_result("x", {"first": 10.0, "last": 12.0, "count": 1001}, 1001)
    assert outcome.msg_s == 500
    assert outcome.reason == ""


def test_short_count_scores_zero_with_reason():
    outcome = _common.from_result("x", {"first": 10.0, "last": 12.0, "count": 10}, 1000)
    assert outcome.msg_s == 0.0
    assert "10 of 1000" in outcome.reason


def test_ratio_is_zero_when_a_side_did_not_run():
    assert _common.ratio(100.0, 0.0) == 0.0
    assert _common.ratio(0.0, 100.0) == 0.0
    assert _common.ratio(150.0, 100.0) == 1.5


def test_reload_accounting_counts_lost_duplicated_gap_and_in_flight():
    hup = 100.0
    outputs = [(i, "v1", 99.0 + i * 0.01) for i in range(50)]          # ids 0..49, to 99.49
    outputs += [(49, "v1", 99.6)]                                       # one duplicate
    outputs += [(i, "v2", 100.3 + (i - 50) * 0.01) for i in range(50, 99)]  # 99 lost
    result = reload_bench.analyse(outputs, total=100, hup_time=hup, hup_id=50)
    assert result["lost"] == 1
    assert result["duplicated"] == 1
    assert result["switch_ms"] == 300.0
    assert result["gap_ms"] == 700.0  # last v1 output at 99.6, first v2 at 100.3
    assert result["in_flight"] == 0


def test_reload_without_v2_outputs_reports_why():
    result = reload_bench.analyse([(0, "v1", 1.0)], total=1, hup_time=0.5, hup_id=1)
    assert "did not take effect" in result["reason"]


def test_table_aligns_columns():
    text = _common.table(["a", "bb"], [[1, 2.5], ["long", 1234.0]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert "1,234" in text


def test_shared_memory_a_contestant_leaves_behind_is_removed():
    # A contestant that makes a multiprocessing block and leaves with os._exit, as the
    # harness's contestants do: without the clean-up the block stays in /dev/shm.
    child = ("import json, os\n"
             "from multiprocessing import shared_memory\n"
             "block = shared_memory.SharedMemory(create=True, size=4096)\n"
             "print(json.dumps({'result': {'first': 1.0, 'last': 2.0, 'count': 2,"
             " 'block': block.name}}), flush=True)\n"
             "os._exit(0)\n")
    outcome = _common.run_child("leaky", [sys.executable, "-c", child], timeout=60.0)
    assert outcome.reason == "", outcome.reason
    assert not (Path("/dev/shm") / outcome.extra["block"]).exists()
