"""The daemon's side of the table keeper (``supervisor/keeper``): start it, tell it which
table partitions this daemon does not own, read its status, stop it.

The keeper runs only when there is something to copy: a GlobalTable (every daemon
keeps a host copy), or tables on disk with ``table_standby_replicas`` above 0 (a
daemon keeps standby shards of the partitions other daemons of its group own). It is
a child process on pipes: a line of JSON per standby set in, ``ready`` out once its
GlobalTables are caught up; if the daemon dies, its stdin closes and it exits.

Standby is per daemon, not per replica count: with ``table_standby_replicas`` ≥ 1
each daemon keeps every partition it does not own (Faust spreads N replicas over the
group; agentd does not see the other members' assignments). With two daemons that is
exactly one replica.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from supervisor.daemon.fleet import Fleet
from supervisor.daemon.topics import daemon_client_settings

__all__ = ["KEEPER_MODULE", "KeeperError", "TableKeeper"]

log = logging.getLogger("agentd")

KEEPER_MODULE = "supervisor.keeper"
READY_TIMEOUT = 600.0   # GlobalTables to catch up before the daemon gives up
STOP_GRACE = 5.0


class KeeperError(RuntimeError):
    """The keeper could not start or catch up (one line: its reason)."""


class TableKeeper:
    """The keeper process, and which source partitions this daemon owns."""

    def __init__(self, copies: Mapping[str, Mapping[str, Any]], *, bootstrap: str,
                 client: Mapping[str, Any], status_file: Path, env: Mapping[str, str],
                 standby_replicas: int) -> None:
        self.standby_tables = {c: t for c, t in copies.items()
                               if not t["global"] and not t["memory"] and standby_replicas > 0}
        self.global_tables = {c: t for c, t in copies.items() if t["global"]}
        self.spec = {"bootstrap": bootstrap, "client": dict(client),
                     "status_file": str(status_file),
                     "tables": [*self.standby_tables.values(), *self.global_tables.values()]}
        self.status_file = status_file
        self.env = dict(env)
        self.owned: set[tuple[str, int]] = set()
        self.proc: subprocess.Popen[str] | None = None

    @classmethod
    def of(cls, fleet: Fleet) -> TableKeeper:
        """The keeper of ``fleet``'s tables (started only if :attr:`needed`)."""
        bootstrap, config = fleet.bootstrap, fleet.config
        client = daemon_client_settings(bootstrap, config.kafka)
        del client["bootstrap.servers"]
        return cls(fleet.table_copies, bootstrap=bootstrap, client=client,
                   status_file=config.state_dir / "keeper-status.json",
                   env=fleet.env_for(config), standby_replicas=config.table_standby_replicas)

    @property
    def needed(self) -> bool:
        return bool(self.standby_tables or self.global_tables)

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        """Start the keeper and wait until its GlobalTables are caught up."""
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", KEEPER_MODULE], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=self.env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(self.spec) + "\n")
        self.proc.stdin.flush()
        started = time.monotonic()
        line = self.proc.stdout.readline()  # the keeper logs its progress meanwhile
        if line.strip() != "ready":
            code = self.proc.wait(timeout=STOP_GRACE)
            raise KeeperError(f"the table keeper exited ({code}) before its GlobalTables "
                              f"were caught up; its log says why")
        log.info("table keeper ready in %.2fs: %d standby table(s), %d GlobalTable(s)",
                 time.monotonic() - started, len(self.standby_tables),
                 len(self.global_tables))

    def stop(self) -> None:
        """Close its stdin (it closes its copies and exits); kill it after a grace."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=STOP_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    # ------------------------------------------------------------------ ownership

    def assigned(self, partitions: Iterable[tuple[str, int]]) -> None:
        self.owned.update(partitions)
        self.send_standby()

    def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        self.owned.difference_update(partitions)
        self.send_standby()

    def standby_set(self) -> list[tuple[str, int]]:
        """Every table partition whose source partitions this daemon owns none of."""
        wanted = []
        for changelog, table in self.standby_tables.items():
            for p in range(int(table["partitions"])):
                if not any((topic, p) in self.owned for topic in table["topics"]):
                    wanted.append((changelog, p))
        return wanted

    def send_standby(self) -> None:
        if self.proc is None or self.proc.stdin is None or not self.standby_tables:
            return
        try:
            self.proc.stdin.write(json.dumps({"standby": self.standby_set()}) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:  # it died: standby copies lapse, the data path does not
            log.warning("table keeper: cannot send the standby set (%s)", exc)

    # ------------------------------------------------------------------ status

    def status_rows(self) -> list[dict[str, Any]]:
        """The keeper's copies as ``agentd status`` shows them ([] if none yet)."""
        try:
            rows: list[dict[str, Any]] = json.loads(self.status_file.read_text())["rows"]
        except (OSError, ValueError, KeyError):
            return []
        return rows
