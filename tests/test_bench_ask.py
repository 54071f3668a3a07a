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


def _round(latencies_ms: list[float], count: int, seconds: float, reason: str = ""):
    import _common

    seconds_each = [x / 1000 for x in latencies_ms]
    extra: dict = {"sequential_s": seconds_each, "concurrent_s": seconds_each}
    if seconds_each:
        extra["sequential"] = _common.percentiles(seconds_each)
    return _common.Outcome("agentd", msg_s=count / seconds if seconds else 0.0, count=count,
                           seconds=seconds, reason=reason, extra=extra)


def test_a_row_pools_the_latencies_of_all_its_rounds():
    fast = _round([1.0] * 99, count=99, seconds=1.0)
    slow = _round([10.0] * 99 + [20.0], count=100, seconds=3.0)
    row = ask_bench.pool("agentd", [fast, slow])
    assert row.extra["sequential_count"] == 199
    # The pooled median sits in the slow round; neither round alone gives these.
    assert row.extra["sequential"] == {"p50": 10.0, "p99": 10.0, "p999": 20.0}
    assert row.extra["round_p99_over_p50"] == [1.0, 2.0]  # each round on its own
    assert row.msg_s == round(199 / 4.0)
    assert row.reason == ""


def test_a_failed_round_fails_its_row():
    row = ask_bench.pool("agentd", [_round([1.0], 1, 1.0), _round([], 0, 0.0, "hung")])
    assert row.reason == "hung"
