"""The daemon's state as one plain dict: ``agentd status --json`` and the metrics read it.

Built in the supervisor's loop thread (never from another thread: the loop mutates
the instances and the tracker without locks), from what the supervisor already
holds plus cheap local reads: psutil for RSS/CPU, librdkafka's *cached* high
watermarks for lag (no broker round trip, so building a snapshot never blocks the
loop). The schema is documented in ``docs/operations.md`` ("Status schema"); add keys,
never rename or remove them, and bump ``SCHEMA`` only for a breaking change.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from supervisor import __version__
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import Instance
from supervisor.daemon.lifecycle import Lifecycle
from supervisor.daemon.reload import Reloader
from supervisor.daemon.tablestatus import TableStatus

SCHEMA = 1


@dataclass(frozen=True)
class Sources:
    """The daemon's parts that status reads (never changes)."""

    fleet: Fleet
    datapath: DataPath
    life: Lifecycle
    reloader: Reloader   # a reload's or recycle's handover shows the draining process
    tables: TableStatus  # the instances' table shards and the daemon's keepers


@dataclass
class Observations:
    """What the supervisor loop does not keep itself but status must show.

    Filled by :class:`supervisor.daemon.ops.operations.Operations` hooks: per-instance error counts,
    commit timings, the reload state and the last warning the supervisor logged.
    """

    started_at: float = field(default_factory=time.time)
    errors: dict[str, int] = field(default_factory=dict)          # instance label → count
    instance_errors: dict[str, dict[str, Any]] = field(default_factory=dict)  # label → newest
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    commits: int = 0
    commit_failures: int = 0
    last_commit_latency: float | None = None
    reload_state: str = "idle"          # idle | reloading | failed
    reloads: int = 0
    reload_error: str | None = None
    reload_at: float | None = None
    last_error: dict[str, Any] | None = None   # {"at": unix time, "message": str}


class ProcessProbe:
    """psutil handles kept per pid, so ``cpu_percent`` measures since the last look."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def sample(self, pid: int | None) -> tuple[int | None, float | None]:
        """``(rss bytes, cpu percent)`` of ``pid``; ``(None, None)`` when it is gone."""
        if pid is None:
            return None, None
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
                proc.cpu_percent(None)  # first call only starts the measurement
            with proc.oneshot():
                return proc.memory_info().rss, proc.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return None, None

    def forget_others(self, live: set[int]) -> None:
        """Drop handles of pids that are no longer instances (bounded memory)."""
        for pid in [pid for pid in self._procs if pid not in live]:
            del self._procs[pid]


def instance_state(inst: Instance) -> str:
    """``running`` | ``stopping`` | ``starting`` | ``restarting`` | ``stopped``."""
    if inst.pid is not None:
        return "stopping" if inst.stopping else "running"
    if inst.restart_at is not None:
        return "restarting" if inst.restarts else "starting"
    return "stopped"


def daemon_state(parts: Sources, seen: Observations) -> str:
    """``starting`` until consuming, then ``running``/``reloading``/``draining``."""
    if parts.datapath.consumer is None:
        return "stopping" if not parts.life.running else "starting"
    if not parts.life.serving:
        return "draining"
    return "reloading" if seen.reload_state == "reloading" else "running"


def build(parts: Sources, seen: Observations, probe: ProcessProbe) -> dict[str, Any]:
    """The whole status document (see the module docstring for the rules)."""
    fleet, config = parts.fleet, parts.fleet.config
    partitions = _partitions(parts.datapath, fleet.topics, seen)
    partition_by_key = {(p["topic"], p["partition"]): p for p in partitions}
    instances: list[dict[str, Any]] = []
    live: set[int] = set()
    handover = parts.reloader.handover  # a reload or recycle replacing one process
    for inst in fleet.instances:
        pid, state = inst.pid, instance_state(inst)
        if handover is not None and handover.inst is inst and handover.detached \
                and not handover.exited:
            pid, state = handover.pid, "handover"  # the old process, draining
        rss, cpu = probe.sample(pid)
        if pid is not None:
            live.add(pid)
        instances.append({
            "agent": inst.agent.name, "index": inst.index, "pid": pid,
            "state": state, "restarts": inst.restarts,
            "processed": inst.processed, "errors": seen.errors.get(inst.label, 0),
            "last_error": seen.instance_errors.get(inst.label),
            "in_flight": len(inst.unacked), "pending": len(inst.pending),
            "rss_bytes": rss, "cpu_percent": cpu,
            "partitions": _instance_partitions(inst, partition_by_key),
            **_transaction(inst, fleet.exactly_once),
        })
    probe.forget_others(live)
    agents = []
    for agent in fleet.agents:
        mine = [i for i in instances if i["agent"] == agent.name]
        lags = [p["lag"] for p in partitions if p["topic"] in agent.topics
                and p["lag"] is not None]
        agents.append({
            "name": agent.name, "topics": list(agent.topics),
            "ordering": agent.config.ordering, "on_error": agent.config.on_error,
            "instances": len(mine), "processed": sum(i["processed"] for i in mine),
            "errors": sum(i["errors"] for i in mine),
            "in_flight": sum(i["in_flight"] for i in mine),
            "restarts": sum(i["restarts"] for i in mine), "lag": sum(lags),
        })
    known_lags = [p["lag"] for p in partitions if p["lag"] is not None]
    return {
        "schema": SCHEMA, "version": __version__, "pid": os.getpid(),
        "state": daemon_state(parts, seen), "config": config.source,
        "started_at": seen.started_at, "uptime_s": round(time.time() - seen.started_at, 3),
        "broker": fleet.bootstrap, "embedded": config.embedded,
        "group_id": config.group_id or fleet.app_id(),
        # whether this daemon runs the on_leader tasks/timers; null: the app has none
        "leader": None if fleet.leadership is None else fleet.leadership.is_leader,
        "processing_guarantee": fleet.guarantee,
        "agents": agents, "instances": instances, "partitions": partitions,
        "lag": sum(known_lags),
        "tables": parts.tables.rows(), "table_recovery": parts.tables.recovery_rows(),
        "channels": _channels(fleet),
        "commit": {"commits": seen.commits, "failures": seen.commit_failures,
                   "last_latency_s": seen.last_commit_latency},
        "reload": {"state": seen.reload_state, "reloads": seen.reloads,
                   "last_at": seen.reload_at, "last_error": seen.reload_error},
        "last_error": seen.last_error,
    }


def _channels(fleet: Any) -> list[dict[str, Any]]:
    """The channels agents here read: full (its senders wait), and the messages waiting
    in the daemon for each reading instance (``channelflow.py``)."""
    rows = []
    for name in fleet.flow.index:
        readers = [inst for agent in fleet.agents if name in agent.channels
                   for inst in agent.instances]
        rows.append({"channel": name, "full": name in fleet.flow.full,
                     "bound": min((inst.agent.channel_bound for inst in readers), default=0),
                     "waiting": [inst.channel_queued for inst in readers]})
    return rows


def _transaction(inst: Instance, exactly_once: bool) -> dict[str, Any]:
    """Under exactly once, an instance's transactions: commits (all its processes),
    aborted (one per death: its successor aborts what it left open), and the open
    one's held records and age."""
    if not exactly_once:
        return {}
    report = inst.txn
    return {"transaction": {
        "commits": inst.txn_commits, "aborted": inst.restarts,
        "held_records": report.held_records if report is not None else 0,
        "open_age_s": round(report.open_age_s, 3) if report is not None else None}}


def _partitions(datapath: DataPath, topics: list[str],
                seen: Observations) -> list[dict[str, Any]]:
    """Assigned partitions with committed offset, high watermark (cached) and lag."""
    consumer, tracker = datapath.consumer, datapath.tracker
    if consumer is None:
        return []
    try:
        assigned = consumer.assignment()
    except Exception:  # closed or not yet joined: nothing to show
        return []
    paused = {(topics[t], p) for t, p in datapath.paused_by} \
        if datapath.paused_by else set()
    rows: list[dict[str, Any]] = []
    for tp in sorted(assigned, key=lambda tp: (tp.topic, tp.partition)):
        key = (tp.topic, tp.partition)
        low = high = None
        with contextlib.suppress(Exception):
            lw, hw = consumer.get_watermark_offsets(tp, cached=True)
            low, high = (lw, hw) if hw >= 0 else (None, None)
        committed = seen.committed.get(key)
        position = tracker.position(key)
        base = committed if committed is not None else position
        if base is None and high is not None and low == high:
            base = high  # an empty partition: nothing to be behind on
        lag = max(0, high - base) if high is not None and base is not None else None
        rows.append({"topic": tp.topic, "partition": tp.partition, "committed": committed,
                     "position": position, "high_watermark": high, "lag": lag,
                     "in_flight": tracker.in_flight(key), "paused": key in paused})
    return rows


def _instance_partitions(inst: Instance,
                         by_key: Mapping[tuple[str, int], Any]) -> list[str]:
    """``topic:partition`` feeding ``inst``: its own in ``partition`` ordering, every
    assigned partition of its topics otherwise (any instance may get any message)."""
    agent = inst.agent
    if agent.config.ordering == "partition" and agent.router is not None:
        owned = agent.router.partitions_of(inst.index)
    else:
        owned = [key for key in by_key if key[0] in agent.topics]
    return [f"{topic}:{partition}" for topic, partition in sorted(owned)]
