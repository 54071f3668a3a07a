"""The agentd side of the benches: the same trivial (or CPU-bound) agent the peers run.

Loaded by ``agentd start`` as ``app = "_agentd_app:app"`` with ``bench/`` on PYTHONPATH;
everything it needs comes from the environment the bench gives the daemon:

- ``BENCH_TOPIC``: the input topic; ``BENCH_APP_ID``: the app id;
- ``BENCH_INSTANCES``: the agent's ``concurrency`` (agentd's default instance count);
- ``BENCH_WORK``: ``burn`` iterations per message (0 = decode only);
- ``BENCH_MARK_DIR``: each instance writes ``first-<pid>`` there (wall-clock time of its
  first processed message) so the parent can start the clock at the first message;
  and the process that imports this module writes ``modules-<pid>``: where it found
  ``supervisor`` and ``agentlib`` (``bench/trees.py`` checks which tree ran);
- ``BENCH_SINK``: if set, each event is forwarded there as ``{"id", "tag", "pid"}``
  (the reload bench counts lost and duplicated ids); the tag is the content of
  ``BENCH_TAG_FILE`` when the module is imported (else ``BENCH_TAG``, default ``v1``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _common import burn, mark_first

import agentlib as faust

TOPIC = os.environ.get("BENCH_TOPIC", "bench-input")
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "1"))
WORK = int(os.environ.get("BENCH_WORK", "0"))
MARK_DIR = os.environ.get("BENCH_MARK_DIR", "")
SINK = os.environ.get("BENCH_SINK", "")
TAG_FILE = os.environ.get("BENCH_TAG_FILE", "")
# Read at import: a reload that re-imports the module picks up a new tag.
TAG = Path(TAG_FILE).read_text().strip() if TAG_FILE else os.environ.get("BENCH_TAG", "v1")

app = faust.App(os.environ.get("BENCH_APP_ID", "bench-agentd"), value_serializer="json")


class Event(faust.Record, serializer="json"):
    id: int
    account: str
    amount: float
    currency: str
    kind: str
    ts: int


class Tagged(faust.Record, serializer="json"):
    id: int
    tag: str
    pid: int


def _mark_modules() -> None:
    if MARK_DIR:
        found = {}
        for name in ("supervisor", "agentlib"):
            where = getattr(sys.modules.get(name), "__file__", None)
            found[name] = str(Path(where).parent) if where else ""
        path = os.path.join(MARK_DIR, f"modules-{os.getpid()}")
        with open(path + ".tmp", "w") as out:
            json.dump(found, out)
        os.replace(path + ".tmp", path)


_mark_modules()
source = app.topic(TOPIC, value_type=Event)
sink = app.topic(SINK, value_type=Tagged) if SINK else None


@app.agent(source, concurrency=INSTANCES, sink=[sink] if sink is not None else None)
async def process(stream: Any) -> AsyncIterator[Tagged]:
    first = True
    pid = os.getpid()
    async for event in stream:
        if first:
            mark_first(MARK_DIR)
            first = False
        if WORK:
            burn(WORK)
        if sink is not None:
            yield Tagged(id=event.id, tag=TAG, pid=pid)
