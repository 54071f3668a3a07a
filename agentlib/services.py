"""``faust.Service`` (mode's ``Service``), as much as apps registered with
``@app.service`` use: ``on_start``/``on_stop`` and methods marked ``@Service.task``
(run once, in the background) or ``@Service.timer(seconds)`` (run every interval).

The class only declares; agentd runs a registered service in the instance that runs
the app's tasks and timers, so its background work happens once per daemon, as
``@app.task`` does, and ``on_stop`` is awaited when that instance stops.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Service", "service_tasks", "service_timers"]

F = TypeVar("F", bound=Callable[..., Any])
_TASK = "_agentlib_service_task"
_TIMER = "_agentlib_service_timer"


class Service:
    """Subclass and register with ``@app.service``; override ``on_start``/``on_stop``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # mode's Service takes beacon=/loop=; accepted so Faust subclasses construct.
        pass

    async def on_start(self) -> None:
        """Called before the service's tasks and timers start."""

    async def on_stop(self) -> None:
        """Called when the instance running the service stops."""

    @staticmethod
    def task(fun: F) -> F:
        """Mark an ``async def method(self)`` to run once, in the background."""
        setattr(fun, _TASK, True)
        return fun

    @staticmethod
    def timer(interval: float | datetime.timedelta) -> Callable[[F], F]:
        """Mark an ``async def method(self)`` to run every ``interval`` seconds."""
        seconds = (interval.total_seconds() if isinstance(interval, datetime.timedelta)
                   else float(interval))
        if seconds <= 0:
            raise ValueError("timer interval must be positive")

        def mark(fun: F) -> F:
            setattr(fun, _TIMER, seconds)
            return fun
        return mark


def service_tasks(service: Service) -> list[Callable[[], Any]]:
    """The bound ``@Service.task`` methods of ``service``."""
    return [getattr(service, name) for name in dir(type(service))
            if getattr(getattr(type(service), name, None), _TASK, False)]


def service_timers(service: Service) -> list[tuple[float, Callable[[], Any]]]:
    """``(seconds, bound method)`` for each ``@Service.timer`` method of ``service``."""
    found = []
    for name in dir(type(service)):
        seconds = getattr(getattr(type(service), name, None), _TIMER, None)
        if seconds is not None:
            found.append((float(seconds), getattr(service, name)))
    return found
