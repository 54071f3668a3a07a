"""The supervisor loop's flow trace for ``bench/flow.py`` (put this directory on
PYTHONPATH and set ``FLOW_TRACE_ROOT``; it does nothing without ``AGENTD_FLOW_TRACE``).

Only in the process started as ``agentd start``: wraps ``DataPath`` (pause, resume,
fetch, dispatch, pump), ``wake_fetchers`` when the tree has it, and
``Committer.retire``, recording per call the monotonic time and the backlog and ring
fill of each instance; dumps the events as JSON at exit into ``AGENTD_FLOW_TRACE``.
The first event maps the monotonic clock to wall time. ``timeline.py`` reads them.
Found issue 21's stall after resume with it; a wrapper costs about a microsecond a
loop turn, in both trees alike.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_DIR = os.environ.get("AGENTD_FLOW_TRACE")


def _install(trace_dir: str) -> None:
    import atexit
    import importlib.abc
    import importlib.util
    import json
    import time

    events: list[Any] = [(time.time(), "T0", time.monotonic())]
    now = time.monotonic

    def fill(inst: Any) -> tuple[int, int, int]:
        from supervisor.transport import ring

        r = inst.inbound
        used = -1 if r is None else r._head - r._ctl[ring._TAIL]
        return len(inst.pending), inst.pending_bytes, used

    def patch_datapath(mod: Any) -> None:
        dp = mod.DataPath
        pause, resume, fetch = dp.pause, dp.resume, dp.fetch
        dispatch, pump = dp.dispatch, dp.pump_instances

        def traced_pause(self: Any, inst: Any, tps: Any) -> None:
            tps = list(tps)
            events.append((now(), "P", inst.index, *fill(inst), len(tps)))
            pause(self, inst, tps)

        def traced_resume(self: Any, inst: Any, tps: Any) -> None:
            tps = list(tps)
            events.append((now(), "R", inst.index, *fill(inst), len(tps)))
            resume(self, inst, tps)

        def traced_fetch(self: Any, busy: bool, waiting: bool) -> bool:
            t0 = now()
            got = fetch(self, busy, waiting)
            events.append((t0, "F", int(busy), int(got), now() - t0))
            return got

        def traced_dispatch(self: Any, messages: list[Any]) -> None:
            t0 = now()
            dispatch(self, messages)
            events.append((t0, "D", len(messages), now() - t0,
                           [fill(i) for i in self.instances]))

        def traced_pump(self: Any) -> bool:
            t0 = now()
            moved = pump(self)
            if moved:
                events.append((t0, "M", now() - t0, [fill(i) for i in self.instances]))
            return moved

        dp.pause, dp.resume, dp.fetch = traced_pause, traced_resume, traced_fetch
        dp.dispatch, dp.pump_instances = traced_dispatch, traced_pump
        wake = getattr(mod, "wake_fetchers", None)
        if wake is not None:
            def traced_wake(consumer: Any, tps: Any) -> None:
                t0 = now()
                wake(consumer, tps)
                events.append((t0, "W", now() - t0, [tp.partition for tp in tps]))
            mod.wake_fetchers = traced_wake

    def patch_commit(mod: Any) -> None:
        retire = mod.Committer.retire

        def traced_retire(self: Any, inst: Any, records: Any, on_report: Any) -> None:
            events.append((now(), "A", inst.index, len(records)))
            retire(self, inst, records, on_report)
        mod.Committer.retire = traced_retire

    patches = {"supervisor.daemon.datapath": patch_datapath,
               "supervisor.daemon.commit": patch_commit}

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name not in patches:
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            loader = spec.loader if spec is not None else None
            if loader is None:
                return spec
            exec_module = loader.exec_module

            def traced_exec(module: Any) -> None:
                exec_module(module)
                patches[name](module)
            loader.exec_module = traced_exec  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Hook())

    def dump() -> None:
        with open(os.path.join(trace_dir, f"trace-{os.getpid()}.json"), "w") as out:
            json.dump(events, out)
    atexit.register(dump)


if _DIR and "start" in sys.argv:
    _install(_DIR)
