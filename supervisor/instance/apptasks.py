"""An instance's background tasks: the app's ``@app.task``s and ``@app.timer``s, and the
worker's own (the producer warm-up), kept so they can be cancelled at exit and their
failures logged rather than lost."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]

log = logging.getLogger("agentd.worker")


class Background:
    """Tasks running beside the agent in one instance."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        #: the on_leader tasks and timers running now (while this daemon leads)
        self.leading: set[asyncio.Task[Any]] = set()
        self.services: list[Any] = []

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        self._spawn(coro, name)

    def start_app_tasks(self, app: Any, leading: bool = False) -> None:
        """Run the app's ``@app.task``s once, its ``@app.timer``s on their interval, its
        ``@app.crontab``s on their schedule and its ``@app.service``s.

        The supervisor asks exactly one instance to do this, so a timer fires once per
        interval per supervisor (Faust runs them in every worker, too). ``on_leader``
        ones wait for :meth:`lead`: one daemon of the group runs them.
        """
        for task in getattr(app, "tasks", []):
            self.spawn(_call_app_function(task, app), getattr(task, "__name__", "task"))
        for timer in getattr(app, "timers", []):
            if not timer.on_leader:
                self.spawn(_run_timer(timer.seconds, timer.fun, app),
                           getattr(timer.fun, "__name__", "timer"))
        for cron in getattr(app, "crontabs", []):
            if not cron.on_leader:
                self.spawn(_run_crontab(cron, app), getattr(cron.fun, "__name__", "crontab"))
        for cls in getattr(app, "services", []):
            self.spawn(self._start_service(cls), getattr(cls, "__name__", "service"))
        self.lead(app, leading)

    def lead(self, app: Any, leading: bool) -> None:
        """Start the app's ``on_leader`` tasks, timers and crontabs (this daemon leads
        the group now), or cancel them (it no longer does). Telling it twice changes
        nothing."""
        if not leading:
            for task in list(self.leading):
                task.cancel()
            self.leading.clear()
            return
        if self.leading:
            return
        for fun in getattr(app, "leader_tasks", []):
            self.leading.add(self._spawn(_call_app_function(fun, app),
                                         getattr(fun, "__name__", "task")))
        for timer in getattr(app, "timers", []):
            if timer.on_leader:
                self.leading.add(self._spawn(_run_timer(timer.seconds, timer.fun, app),
                                             getattr(timer.fun, "__name__", "timer")))
        for cron in getattr(app, "crontabs", []):
            if cron.on_leader:
                self.leading.add(self._spawn(_run_crontab(cron, app),
                                             getattr(cron.fun, "__name__", "crontab")))

    async def _start_service(self, cls: Any) -> None:
        """Make the service, await ``on_start``, then run its tasks and timers."""
        from agentlib.services import service_tasks, service_timers
        service = cls()
        await service.on_start()
        self.services.append(service)
        for method in service_tasks(service):
            self.spawn(method(), getattr(method, "__qualname__", "service-task"))
        for seconds, method in service_timers(service):
            self.spawn(_run_timer(seconds, method, None),
                       getattr(method, "__qualname__", "service-timer"))

    async def stop_services(self) -> None:
        """Await each started service's ``on_stop`` (after the tasks were cancelled)."""
        for service in reversed(self.services):
            try:
                await service.on_stop()
            except Exception:
                log.exception("service %s on_stop failed", type(service).__name__)
        self.services.clear()

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.leading.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("app task %s failed", task.get_name(), exc_info=task.exception())


async def _call_app_function(fun: Any, app: Any) -> Any:
    """Faust passes the app to a task or timer that takes an argument."""
    try:
        takes_app = bool(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        takes_app = False
    return await (fun(app) if takes_app else fun())


async def _run_timer(seconds: float, fun: Any, app: Any) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await _call_app_function(fun, app)
        except Exception:
            log.exception("timer %s failed", getattr(fun, "__name__", fun))


async def _run_crontab(cron: Any, app: Any) -> None:
    """Sleep until the schedule's next time, run, repeat (Faust's crontab loop)."""
    from agentlib.cron import next_fire
    while True:
        await _sleep_until(next_fire(cron.cron_format, cron.timezone, time.time()))
        try:
            await _call_app_function(cron.fun, app)
        except Exception:
            log.exception("crontab %s failed", getattr(cron.fun, "__name__", cron.fun))


async def _sleep_until(wall: float) -> None:
    """Until ``time.time()`` reaches ``wall``. asyncio sleeps by the monotonic clock;
    where it and the wall clock drift apart (a VM), one sleep can end a fraction of a
    millisecond early, and a job due at the minute would see the minute before."""
    while (left := wall - time.time()) > 0:
        await asyncio.sleep(left)
