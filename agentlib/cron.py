"""Cron schedules for ``@app.crontab``: when the next run is due.

Parsing cron expressions is left to ``croniter`` (the library Faust itself uses in
``faust.utils.cron``) rather than hand-written, so ranges, steps, names and the
optional sixth (seconds) field behave as users of Faust expect.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from croniter import croniter

__all__ = ["Crontab", "next_fire", "secs_for_next", "validate"]


@dataclass(frozen=True, slots=True)
class Crontab:
    """A function to run on a cron schedule (``@app.crontab``)."""

    cron_format: str
    fun: Callable[..., Awaitable[Any]]
    timezone: datetime.tzinfo | None = None
    on_leader: bool = False


def validate(cron_format: str) -> None:
    """Raise ``ValueError`` at declaration time, not when the worker starts."""
    if not croniter.is_valid(cron_format):
        raise ValueError(f"invalid cron expression {cron_format!r}")


def secs_for_next(cron_format: str, tz: datetime.tzinfo | None = None,
                  now: datetime.datetime | None = None) -> float:
    """Seconds from ``now`` until the schedule next fires, read in ``tz`` (UTC default).

    Faust's ``faust.utils.cron.secs_for_next``; ``now`` is injectable so the
    computation is tested without a clock.
    """
    zone = tz or datetime.UTC
    current = (now or datetime.datetime.now(zone)).astimezone(zone)
    following: datetime.datetime = croniter(cron_format, current).get_next(datetime.datetime)
    return max((following - current).total_seconds(), 0.0)


def next_fire(cron_format: str, tz: datetime.tzinfo | None, now: float) -> float:
    """The wall-clock time (``time.time()`` scale) the schedule next fires after
    ``now``, read in ``tz`` (UTC default)."""
    zone = tz or datetime.UTC
    current = datetime.datetime.fromtimestamp(now, zone)
    following: datetime.datetime = croniter(cron_format, current).get_next(datetime.datetime)
    return following.timestamp()
