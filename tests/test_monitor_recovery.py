"""The hung-worker check does not kill an instance whose changelog replay is moving: a
replay before the first record can outlast ``heartbeat_timeout`` without processing
anything, and a kill would only start it over."""

from __future__ import annotations

from types import SimpleNamespace

from supervisor.daemon.monitor import Monitor, _Watch


class _Inst:
    """What the progress check reads of an instance, and its kill."""

    def __init__(self) -> None:
        self.label = "count[0]"
        self.unacked = {(0, 0, 0): b"record"}   # one record in its ring...
        self.pending: list[object] = []
        self.processed = 0                       # ...and none processed
        self.table_progress = 0
        self.agent = SimpleNamespace(config=SimpleNamespace(heartbeat_timeout=5.0))
        self.killed = 0

    def kill(self) -> None:
        self.killed += 1


def test_a_worker_replaying_a_changelog_is_not_killed_as_hung_and_a_stalled_one_is():
    monitor = Monitor(SimpleNamespace(instances=[]), SimpleNamespace(serving=True),
                      lambda inst, why: None)
    inst = _Inst()
    watch = _Watch(pid=1, spawned=0.0, processed=0, oldest=None, progress_at=0.0)
    monitor.check_progress(inst, watch, 0.0)  # the first look: its oldest record
    for second in range(1, 20):                # the replay moves on every second
        inst.table_progress = second * 2000
        monitor.check_progress(inst, watch, float(second))
    assert inst.killed == 0
    monitor.check_progress(inst, watch, 24.0)  # stuck since 19 s, timeout 5 s
    assert inst.killed == 1
    assert monitor.hangs_killed == 1
