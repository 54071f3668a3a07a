"""The daemon's table rows: the newest report of each instance, the keepers' rows beside
them, and the recovered-rows counter that survives instance restarts."""

from __future__ import annotations

from types import SimpleNamespace

from supervisor.daemon.tablestatus import TableStatus
from supervisor.transport import wire


def _inst(index: int, pid: int) -> SimpleNamespace:
    return SimpleNamespace(agent=SimpleNamespace(name="app.count"), index=index, pid=pid,
                           table_rows=[], table_progress=0)


def _report(partition: int, state: str, recovered: int, offset: int = 9) -> bytes:
    return wire.encode_tables([wire.TableRow("counts", partition, state, 10, True, 4096,
                                             offset, 0 if state == "active" else 5,
                                             recovered)])


class _Standby:
    def status_rows(self):
        return [{"table": "counts", "partition": 0, "state": "standby", "agent": None,
                 "instance": None, "keys": 10, "keys_estimated": True, "bytes": 4096,
                 "changelog_offset": 9, "changelog_lag": 0, "recovered_rows": 0}]


def test_rows_join_the_keepers_rows_by_partition_and_recovered_rows_count_once():
    first, second = _inst(0, 100), _inst(1, 200)
    status = TableStatus(SimpleNamespace(instances=[first, second]))
    status.keepers.append(_Standby())
    status.on_report(second, _report(1, "recovering", 300, offset=299))
    assert second.table_progress == 300  # a replay's position: the monitor's progress
    status.on_report(second, _report(1, "active", 500))
    status.on_report(second, _report(1, "active", 500))   # the same count again
    status.on_report(first, _report(0, "active", 0))

    rows = status.rows()
    assert [(r["partition"], r["state"], r["instance"]) for r in rows] == \
        [(0, "active", 0), (0, "standby", None), (1, "active", 1)]
    assert rows[0] == {"table": "counts", "partition": 0, "state": "active",
                       "agent": "app.count", "instance": 0, "keys": 10,
                       "keys_estimated": True, "bytes": 4096, "changelog_offset": 9,
                       "changelog_lag": 0, "recovered_rows": 0}
    assert status.recovery_rows() == [{"table": "counts", "partition": 1,
                                       "recovered_rows": 500}]

    second.pid = 201  # restarted: its new process counts from 0 again
    status.on_report(second, _report(1, "active", 120))
    assert status.recovered[("counts", 1)] == 620
