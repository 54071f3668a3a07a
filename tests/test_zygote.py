"""The zygote hands its instances a heap the cyclic GC no longer walks (gc.freeze)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from supervisor.daemon.zygote import Zygote

TESTS = Path(__file__).resolve().parent


def test_a_forked_instance_inherits_the_imported_app_frozen_out_of_the_gc(
        tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    env = {**os.environ, "ZYGOTE_PROBE_OUT": str(out),
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS),
                                          os.environ.get("PYTHONPATH", "")])}
    zygote = Zygote.start(["zygote_gc_probe_app:app"], env)
    try:
        zygote.fork(zygote.agents[0].name, {}, [])
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = json.loads(out.read_text())
    finally:
        zygote.stop()
    # Everything the import made (agentlib, confluent_kafka, the app) is frozen; what
    # the collector still tracks is the little the instance made after the fork.
    assert seen["frozen"] > 5_000, seen
    assert seen["tracked"] < seen["frozen"] / 10, seen


def test_the_zygotes_old_module_path_still_serves_a_daemon_started_before_an_upgrade(
        tmp_path: Path, monkeypatch) -> None:
    # A daemon that predates the sub-packages execs ``python -m supervisor.zygote``
    # for its next reload's canary, importing whatever code is installed by then.
    import supervisor.daemon.zygote as handle

    monkeypatch.setattr(handle, "ZYGOTE_MODULE", "supervisor.zygote")
    env = {**os.environ, "ZYGOTE_PROBE_OUT": str(tmp_path / "probe.json"),
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS),
                                          os.environ.get("PYTHONPATH", "")])}
    zygote = Zygote.start(["zygote_gc_probe_app:app"], env)
    try:
        assert [agent.name for agent in zygote.agents]
        assert "supervisor.zygote" in " ".join(zygote.proc.args)  # type: ignore[arg-type]
    finally:
        zygote.stop()
