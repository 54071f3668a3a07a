"""``@app.crontab``: declaration, and the next-fire computation with a fixed clock."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

import agentlib as faust
from agentlib.cron import secs_for_next

UTC = datetime.UTC


def test_next_fire_every_minute_from_a_fixed_clock() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    assert secs_for_next("* * * * *", None, now) == 30.0


def test_seconds_field_fires_next_second() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    assert secs_for_next("* * * * * *", None, now) == 1.0


def test_timezone_reads_the_expression_in_that_zone() -> None:
    # 08:00 in New York on 2 Jan 2026 (EST, UTC-5) is 13:00 UTC.
    now = datetime.datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
    ny = ZoneInfo("America/New_York")
    assert secs_for_next("0 8 * * *", ny, now) == 3600.0
    assert secs_for_next("0 8 * * *", None, now) == 20 * 3600.0


def test_crontab_registers_with_its_options() -> None:
    app = faust.App("cron-unit")
    tz = ZoneInfo("Europe/Oslo")

    @app.crontab("*/5 * * * *", timezone=tz, on_leader=True)
    async def tick() -> None:
        return None

    [cron] = app.crontabs
    assert (cron.cron_format, cron.fun, cron.timezone, cron.on_leader) == (
        "*/5 * * * *", tick, tz, True)


def test_invalid_expression_fails_at_declaration() -> None:
    app = faust.App("cron-bad")
    with pytest.raises(ValueError, match="invalid cron expression"):
        app.crontab("61 * * * *")


def test_service_registers_and_marks_its_task_and_timer_methods() -> None:
    from agentlib.services import service_tasks, service_timers
    app = faust.App("svc-unit")

    @app.service
    class Worker(faust.Service):
        @faust.Service.task
        async def background(self) -> None:
            return None

        @faust.Service.timer(datetime.timedelta(seconds=2))
        async def tick(self) -> None:
            return None

    assert app.services == [Worker]
    worker = Worker()
    assert service_tasks(worker) == [worker.background]
    assert service_timers(worker) == [(2.0, worker.tick)]


def test_a_crontab_never_runs_before_its_wall_clock_time(monkeypatch):
    """asyncio sleeps by the monotonic clock, a cron time is wall-clock time: where the
    two drift (a VM), a sleep can end a fraction of a millisecond before the minute, and
    the job would see the previous one (CI saw a once-a-second job run at x.9997). The
    loop sleeps again until the wall clock is there."""
    import asyncio

    from agentlib.cron import Crontab
    from supervisor.instance import apptasks

    wall = [99.5]
    ran_at: list[float] = []

    async def early_sleep(seconds: float) -> None:  # wakes 0.3 ms early when it can
        wall[0] += seconds - 0.0003 if seconds > 0.001 else seconds

    async def job() -> None:
        ran_at.append(wall[0])
        raise asyncio.CancelledError  # one run is enough

    monkeypatch.setattr(apptasks.time, "time", lambda: wall[0])
    monkeypatch.setattr(apptasks.asyncio, "sleep", early_sleep)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(apptasks._run_crontab(Crontab("* * * * * *", job), None))
    assert ran_at and ran_at[0] >= 100.0
