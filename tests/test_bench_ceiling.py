"""``bench/ceiling.py``'s arithmetic: progress from a status document, the measured
window, where a profiled stack is counted, and the projection. Made-up inputs only:
no timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import ceiling  # noqa: E402


def sample(at: float, cpu: int, main: int, dispatched: int, acked: int) -> ceiling.Sample:
    made = object.__new__(ceiling.Sample)
    made.at, made.cpu, made.main, made.runq = at, cpu, main, 0.0
    made.dispatched, made.acked = dispatched, acked
    return made


def test_progress_counts_dispatched_and_retired_records_from_the_partitions():
    doc = {"partitions": [{"position": 100, "in_flight": 20}, {"position": 50, "in_flight": 0},
                          {"position": None, "in_flight": 0}]}
    assert ceiling.progress(doc) == (170, 150)


def test_the_window_runs_until_as_many_records_were_acked_as_dispatched_in_it():
    ticks = ceiling.TICK
    samples = [sample(0.0, 0, 0, 0, 0), sample(1.0, ticks, ticks, 100, 0),
               sample(2.0, 2 * ticks, ticks, 900, 300),
               sample(3.0, 3 * ticks, 2 * ticks, 1000, 899),
               sample(4.0, 5 * ticks, 3 * ticks, 1000, 1000)]
    window = ceiling.window(samples, 1000)
    # from the sample at 1 s (100 dispatched) to the first with 900 acked after it
    assert window["messages"] == 900
    assert window["window_s"] == 3.0
    assert window["supervisor_us_per_msg"] == round(4 / 900 * 1e6, 3)
    assert window["main_thread_us_per_msg"] == round(2 / 900 * 1e6, 3)


def test_a_window_without_dispatch_says_why():
    assert "reason" in ceiling.window([sample(0.0, 0, 0, 0, 0)], 10)


def test_a_stack_is_counted_where_its_innermost_supervisor_line_is(tmp_path):
    source = tmp_path / "supervisor" / "daemon" / "datapath.py"
    source.parent.mkdir(parents=True)
    source.write_text("x = 1\n            messages = self.consumer.consume(FETCH_BATCH, 0)\n"
                      "            owner.unacked.update(zip(run_keys, records))\n")
    loop = f"Supervisor.loop ({tmp_path}/supervisor/daemon/supervisor.py:130)"
    assert ceiling.part_of([loop, f"DataPath.fetch ({source}:2)"]) == "consume"
    assert ceiling.part_of([loop, f"DataPath._dispatch_run ({source}:3)"]) \
        == "unacked_bookkeeping"
    ring = f"Ring.write_many ({tmp_path}/supervisor/transport/ring.py:9)"
    assert ceiling.part_of([loop, f"DataPath.dispatch ({source}:1)", ring]) == "ring_write"
    assert ceiling.part_of([f"<module> ({tmp_path}/elsewhere.py:1)"]) == "loop_other"


def test_the_projection_is_the_lesser_of_the_agents_and_the_ceiling():
    rows = {(r["agent_us"], r["cores"]): r for r in ceiling.projection(2.0)}  # 500k msg/s
    assert rows[(5, 2)] == {"agent_us": 5, "cores": 2, "msg_s": 200_000, "bound": "agents"}
    assert rows[(5, 8)]["msg_s"] == 500_000 and rows[(5, 8)]["bound"] == "supervisor"
    assert rows[(100, 32)]["msg_s"] == 310_000
