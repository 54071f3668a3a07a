"""An app for test_zygote: its instances report their GC state instead of running.

Imported by a real zygote. On import it replaces ``supervisor.instance.worker.run`` (what a
forked instance calls) with a probe that writes ``gc.get_freeze_count()`` and the
young generation's size to ``ZYGOTE_PROBE_OUT`` and exits, so the test sees the
heap exactly as an instance inherits it.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import agentlib
from supervisor.instance import worker


def _probe(agent: Any, fds: Sequence[int], settings: dict[str, Any]) -> int:
    path = os.environ["ZYGOTE_PROBE_OUT"]
    with open(f"{path}.tmp", "w") as out:
        json.dump({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}, out)
    os.rename(f"{path}.tmp", path)  # the test reads it whole or not at all
    return 0


worker.run = _probe

app = agentlib.App("zygote-gc-probe")


@app.agent(app.topic("zygote-gc-probe"))
async def probe(stream: Any) -> AsyncIterator[Any]:
    async for value in stream:
        yield value
