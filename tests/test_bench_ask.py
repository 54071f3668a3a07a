"""bench/ask.py's floor row: bare confluent-kafka request/reply against a real broker.

No timing is asserted: the row (also the broker warm-up before every ask run) must
answer every ask it sends, in both phases, and report p50/p99/p999 of what it measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import ask as ask_bench  # noqa: E402


def test_echo_row_answers_every_ask_in_both_phases(kafka_bootstrap):
    outcome = ask_bench.run_echo(kafka_bootstrap, 60, 200, timeout=90.0)
    assert outcome.reason == "", outcome.reason
    assert outcome.count == 200
    assert outcome.extra["sequential_count"] == 60
    for phase in ("sequential", "concurrent"):
        values = outcome.extra[phase]
        assert 0 < values["p50"] <= values["p99"] <= values["p999"]


def test_percentiles_take_the_ordered_sample_at_each_rank():
    import _common

    latencies = [i / 1000 for i in range(1000, 0, -1)]  # 1..1000 ms, reversed
    assert _common.percentiles(latencies) == {"p50": 501.0, "p99": 991.0, "p999": 1000.0}
