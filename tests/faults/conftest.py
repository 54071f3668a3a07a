"""Fault suite fixtures: the load scale (``--soak``) and the end-of-run table.

The table is printed from ``pytest_terminal_summary`` so a CI log shows in / out /
lost / dup / recovery for every scenario side by side, whatever passed or failed.
"""

from __future__ import annotations

import faultkit
import pytest


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> faultkit.Scale:
    """Small loads for CI; long ones with ``pytest --soak``."""
    return faultkit.Scale.of(bool(request.config.getoption("--soak")))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not faultkit.RESULTS:
        return
    terminalreporter.section("fault scenarios")
    head = f"{'scenario':<28} {'in':>7} {'out':>7} {'lost':>5} {'dup':>6} {'recovery s':>10}  note"
    terminalreporter.write_line(head)
    for row in sorted(faultkit.RESULTS, key=lambda r: int(r.scenario.split()[0])):
        terminalreporter.write_line(
            f"{row.scenario:<28} {row.sent:>7} {row.out:>7} {row.lost:>5} {row.dup:>6} "
            f"{row.recovery_s:>10.1f}  {row.note}")
