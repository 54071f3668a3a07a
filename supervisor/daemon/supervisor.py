"""The supervisor: one consumer, one loop, every agent instance fed through its ring.

Read :meth:`Supervisor.run` and :meth:`Supervisor.loop` top to bottom; every state
change is a named method (gunicorn's arbiter is the model). The loop is single-threaded;
signal handlers only queue the signal and write a byte to a self-pipe.

The supervisor holds no data-path state of its own: it composes parts, each given the
narrow objects it works on, never the supervisor itself:

- :class:`~supervisor.daemon.fleet.Fleet`: the agents, their instances, the zygote
  and the config;
- :class:`~supervisor.daemon.datapath.DataPath`: the consumer, routing into the
  rings, backlogs, pause/resume, partitions moving between instances;
- :class:`~supervisor.daemon.commit.Committer`: acks into the offset tracker, commits;
- :class:`~supervisor.daemon.group.GroupMember`: partitions assigned and revoked;
- :class:`~supervisor.daemon.reload.Reloader`: SIGHUP reloads and recycles;
- :class:`~supervisor.daemon.monitor.Monitor`: hung and bloated instances;
- :class:`~supervisor.daemon.ops.operations.Operations`: control socket, sd_notify,
  metrics.

One turn of the loop: handle queued signals → start instances that are due → fetch a
batch and dispatch it (router → wire → ring) → move backlogs into rings that have room
→ read acks → notice dead instances (pidfd) → finish partition moves → advance a
reload → check health → commit on the interval → ops.

The invariant (DESIGN.md §2): an offset is committed only when every agent that got
the message acked it; the :class:`~supervisor.daemon.commit.OffsetTracker` commits the
lowest unacked offset per partition, and each :class:`~supervisor.daemon.instances.Instance`
keeps the records it holds so a crash re-dispatches them.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import time
from typing import Any

from supervisor.config.loader import Config, ConfigError
from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import BLOCKED_WAIT, DataPath
from supervisor.daemon.fetchwatch import FetchWatch
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.group import GroupMember
from supervisor.daemon.instances import Instance
from supervisor.daemon.keeper import KeeperError, TableKeeper
from supervisor.daemon.lifecycle import Lifecycle, StartupError
from supervisor.daemon.membership import GroupConsumer
from supervisor.daemon.monitor import Monitor
from supervisor.daemon.ops.operations import Operations
from supervisor.daemon.ops.snapshot import Sources
from supervisor.daemon.reload import Reloader
from supervisor.daemon.tablestatus import TableStatus
from supervisor.daemon.topics import (
    BrokerUnreachable,
    TopicMismatch,
    connection_settings,
    ensure_topics,
    partition_counts,
)
from supervisor.daemon.transactions import GroupFeed
from supervisor.daemon.zygote import ZygoteError
from supervisor.gctune import tune_gc
from supervisor.transport import wire

__all__ = ["Supervisor"]

log = logging.getLogger("agentd")

STOP_GRACE, REVOKE_WAIT_MAX = 5.0, 30.0  # after STOP, before SIGKILL; a revoke's wait



class Supervisor:
    """Owns the broker connection and the loop; composes the parts that do the work."""

    def __init__(self, config: Config) -> None:
        self.life = Lifecycle()
        self.signals: list[int] = []
        self.embedded: Any = None
        self.fleet = Fleet(config, config.bootstrap_servers or "")
        self.datapath = DataPath(None, self.fleet)
        self.committer = Committer(self.datapath.tracker, self.fleet, self.on_instance_report)
        self.group = GroupMember(self.fleet, self.datapath, self.committer, self.await_acks)
        self.reloader = Reloader(self.fleet, self.datapath, self.committer, self.life)
        self.monitor = Monitor(self.fleet, self.life, self.reloader.recycle)
        self.tables = TableStatus(self.fleet)  # what instances report of their shards
        self.ops: Operations | None = None  # control socket, sd_notify, metrics (at run)
        self.keeper: TableKeeper | None = None  # standby and GlobalTable copies (at start)
        self.txfeed: GroupFeed | None = None  # exactly once: group metadata to instances
        self.consumer = GroupConsumer(self.fleet, self.datapath, self.committer, self.group,
                                      embedded=config.embedded)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    @property
    def config(self) -> Config:
        """The config now in force (a reload replaces it in the fleet)."""
        return self.fleet.config

    # ================================================================= run

    def run(self) -> int:
        """Start everything, loop until stopped, stop everything; the exit code."""
        self.install_signal_handlers()
        self.start_ops()
        try:
            self.start()
            # Everything imported so far lives as long as the process: freeze it, so
            # the loop's full collections skip it (the first took 13 ms, then 0.4 ms).
            gc.collect()
            gc.freeze()
            tune_gc()  # each fetch is 2,000 tracked Messages (gctune.py says why)
            assert self.ops is not None
            self.ops.on_ready()
            self.loop()
        except (ConfigError, TopicMismatch):  # found once the app is imported / Kafka asked
            self.life.exit_code = 2
            raise
        except BaseException:
            self.life.exit_code = self.life.exit_code or 1
            raise
        finally:
            self.shutdown()
        return self.life.exit_code

    def loop(self) -> None:
        life, datapath, committer, fleet = self.life, self.datapath, self.committer, self.fleet
        busy = False
        while life.running:
            self.handle_signals()
            self.spawn_due_instances()
            fetched = self.fetch(busy)
            busy = datapath.pump_instances() or fetched
            busy = committer.read_acks() or busy
            self.reap_instances()
            if datapath.moves.moving:
                datapath.finish_moves()
            self.reloader.poll()
            self.monitor.tick()
            committer.commit_if_due(fetched_nothing=not fetched)
            if fleet.flow.active:  # a channel is full (channelflow.py)
                fleet.flow.tick(fleet.agents)
            if self.txfeed is not None:
                self.txfeed.tick(datapath.consumer)
            if datapath.fatal is not None:
                self.consumer.replace_if_fatal()
            watch = self.group.fetchwatch
            if watch is not None and watch.waiting:  # nothing to do once all are fetched
                watch.tick()
            if self.ops is not None:
                self.ops.tick()
            if datapath.failures is not None:
                datapath.failures.poll()
            if life.draining and self.drained():
                life.running = False

    def fetch(self, busy: bool) -> bool:
        """A batch from the consumer into the rings; while draining, nothing new is
        fetched and the turn waits on the wake pipe instead."""
        if self.life.draining:
            select.select([self._wake_r], [], [], BLOCKED_WAIT)
            return False
        # a handover (reload, recycle) waits on a ring the consumer cannot wake on
        return self.datapath.fetch(busy, waiting=self.reloader.busy)

    # ================================================================= start

    def start_ops(self) -> None:
        """The control socket first: a second daemon on the same state_dir stops here."""
        self.ops = Operations(Sources(self.fleet, self.datapath, self.life, self.reloader,
                                      self.tables), self.queue_signal)
        self.committer.observer = self.ops
        self.reloader.observer = self.ops

    #: start-up failures that already say what went wrong in one line
    EXPLAINED = (ConfigError, TopicMismatch, ZygoteError, BrokerUnreachable, KeeperError)

    def start(self) -> None:
        """Broker, app (zygote), topics, consumer; anything unforeseen that fails here is
        a :class:`StartupError` naming the step (its traceback logged at DEBUG)."""
        steps = (("embedded broker", self.start_broker), ("app", self.fleet.start),
                 ("topics", self.create_topics), ("table keeper", self.start_keeper),
                 ("consumer", self.start_consumer))
        for step, run in steps:
            try:
                run()
            except self.EXPLAINED:
                raise
            except Exception as exc:
                log.debug("start-up step %s failed", step, exc_info=True)
                raise StartupError.of(step, exc) from None

    def start_broker(self) -> None:
        if self.config.embedded:
            from supervisor.devbrokers.embedded import EmbeddedBroker

            self.embedded = EmbeddedBroker()
            self.fleet.bootstrap = self.embedded.bootstrap
            log.info("embedded broker (in memory, not for production): bootstrap=%s",
                     self.fleet.bootstrap)

    def create_topics(self) -> None:
        names = (list(self.fleet.topics) + list(self.fleet.declared_partitions)
                 + list(self.fleet.changelogs))
        for agent in self.fleet.agents:
            cfg = agent.config
            if cfg.on_error == "dead_letter" or (cfg.on_error == "retry"
                                                 and cfg.dead_letter_topic):
                names.extend(cfg.dead_letter_topic_for(t) for t in agent.topics)
        bootstrap = self.fleet.bootstrap
        if self.embedded is None and self.fleet.changelog_sources:
            self.fleet.follow_sources(partition_counts(
                bootstrap, connection_settings(bootstrap, self.config.kafka)))
        ensure_topics(names, bootstrap=bootstrap, embedded=self.embedded,
                      counts={**self.fleet.declared_partitions, **self.fleet.changelogs},
                      compacted=set(self.fleet.changelogs),
                      settings=connection_settings(bootstrap, self.config.kafka))

    def start_keeper(self) -> None:
        """The table keeper, if needed: GlobalTables are caught up before consuming."""
        keeper = TableKeeper.of(self.fleet)
        if keeper.needed:
            keeper.start()
            self.keeper = self.group.keeper = keeper
            self.tables.keepers.append(keeper)

    def start_consumer(self) -> None:
        fleet, datapath = self.fleet, self.datapath
        self.group.fetchwatch = FetchWatch(
            self.consumer.group_id(), fleet.exactly_once,
            paused=lambda tp: (fleet.topic_index.get(tp[0]), tp[1]) in datapath.paused_by)
        self.consumer.start()
        self.txfeed = self.consumer.txfeed
        self.datapath.failures = self.consumer.failures(self.on_crash)

    # ================================================================= signals

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.queue_signal)

    def queue_signal(self, signum: int, frame: object) -> None:
        """Signal handler: queue it, wake the loop. Nothing else happens here."""
        if len(self.signals) < 8:
            self.signals.append(signum)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def handle_signals(self) -> None:
        if not self.signals:
            # Every turn of the loop comes here: a byte is in the wake pipe only after
            # queue_signal queued a signal, so an empty queue needs no read (a read of
            # the empty pipe raised and caught BlockingIOError: ~3 % of a busy loop).
            return
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name.lower()
            getattr(self, f"handle_{name}")()
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 64)

    def handle_sigterm(self) -> None:
        self.begin_drain("SIGTERM")

    def handle_sigint(self) -> None:
        if self.life.draining:
            log.warning("second SIGINT: stopping now, committing only what was acked")
            self.life.exit_code = 1
            self.life.running = False
            self.life.forced = True
            return
        self.begin_drain("SIGINT")

    def handle_sighup(self) -> None:
        """Reload (supervisor/daemon/reload.py); one during a reload is queued behind it."""
        log.info("SIGHUP: reload %s", "queued behind the one running" if self.reloader.busy
                 else "requested")
        self.reloader.request()

    def begin_drain(self, why: str) -> None:
        """Stop fetching; the loop ends when everything dispatched is acked (or time)."""
        if not self.life.draining:
            log.info("%s: draining (up to %.0fs)", why, self.config.shutdown_timeout)
            if self.ops is not None:
                self.ops.on_stopping()
            self.life.draining_until = time.monotonic() + self.config.shutdown_timeout

    def drained(self) -> bool:
        assert self.life.draining_until is not None
        left = self.fleet.unacked_total()
        if not left:
            return True
        if time.monotonic() >= self.life.draining_until:
            log.warning("shutdown_timeout reached with %d records in flight", left)
            return True
        return False

    # ================================================================= instance reports

    def on_instance_report(self, inst: Instance, record: bytes) -> None:
        """An outbound record that is not an ACK (the commit leg handles those)."""
        kind = record[0]
        if kind == wire.ERROR:
            report = wire.decode_error(record)
            if self.ops is not None:
                self.ops.on_instance_error(inst, report.message)
            if report.outcome == wire.OUTCOME_CRASH:
                self.on_crash(f"{inst.label}: {report.message}")
            elif report.outcome == wire.OUTCOME_AGENT_STOPPED:
                inst.agent_stopped = True
        elif kind == wire.PONG:
            inst.processed = wire.decode_pong(record).processed
        elif kind == wire.TABLES:
            self.tables.on_report(inst, record)
        elif kind == wire.TXN:
            inst.on_txn(wire.decode_txn(record))
        elif kind == wire.RETIRED:
            inst.retired = True

    def await_acks(self, partitions: set[tuple[int, int]]) -> None:
        """During a revoke (inside ``consume()``): run the loop's ack steps until no
        instance holds a record of ``partitions``, bounded by the shutdown timeout.
        At close (not running) the instances are already stopped: nothing to wait for."""
        deadline = time.monotonic() + min(self.config.shutdown_timeout, REVOKE_WAIT_MAX)
        while self.life.running and time.monotonic() < deadline \
                and self.fleet.holds_any(partitions):
            self.committer.read_acks()
            self.reloader.poll_handovers()
            self.reap_instances()
            time.sleep(0.005)

    # ================================================================= instances

    def spawn_due_instances(self) -> None:
        """Start instances whose (re)start time has come, draining included: a crashed
        instance's records must still be processed for the drain to finish."""
        if self.life.running:
            self.fleet.spawn_due()

    def reap_instances(self) -> None:
        """Notice dead instances at once (pidfds), re-dispatch what they held."""
        for inst, status in self.fleet.dead():
            self.handle_instance_death(inst, status)

    def handle_instance_death(self, inst: Instance, status: int | None) -> None:
        self.committer.read_acks()  # acks written just before the death still count
        suspect = inst.lone_suspect()
        how = f"exit status {os.waitstatus_to_exitcode(status)}" if status is not None \
            else "exited"
        inst.died()
        if not self.life.running or inst.stopping:
            inst.restart_at = None
            return
        log.warning("%s died (%s); restart %d, re-dispatching %d records", inst.label,
                    how, inst.restarts, len(inst.pending))
        if suspect is not None:
            crashes = inst.crash_counts[suspect] = inst.crash_counts.get(suspect, 0) + 1
            if crashes >= inst.agent.config.poison_after:
                encoded = inst.unacked.pop(suspect)
                inst.crash_counts.pop(suspect, None)
                inst.recover_left -= 1
                self.datapath.fail_record(inst.agent, self.fleet.topics[suspect[0]], encoded,
                                          f"poison message: its instance died {crashes} "
                                          f"times processing it alone")

    # ================================================================= failures

    def on_crash(self, reason: str) -> None:
        """The ``crash`` policy fired: stop now, non-zero, committing only what was done."""
        log.critical("stopping: %s", reason)
        self.life.exit_code = 1
        self.life.running = False

    # ================================================================= stop

    def shutdown(self) -> None:
        """Commit what was acked, stop instances, close the consumer, stop the broker."""
        self.reloader.close(0.0 if self.life.forced else self.config.shutdown_timeout)
        consumer = self.datapath.consumer
        if consumer is not None:
            self.committer.commit(asynchronous=False)
        self.stop_instances()
        if self.keeper is not None:
            self.keeper.stop()
        if consumer is not None:
            self.life.running = False
            consumer.close()
            self.datapath.consumer = self.committer.consumer = None
        if self.datapath.failures is not None:
            self.datapath.failures.close()
        self.fleet.close()
        self.reloader.stop_old_zygote()
        if self.embedded is not None:
            self.embedded.close()
        if self.ops is not None:
            self.ops.close()
        log.info("stopped (exit %d)", self.life.exit_code)

    def stop_instances(self) -> None:
        """STOP to each instance (SIGTERM if its ring is full: the worker drains on
        either); SIGKILL whatever has not exited after a grace, or at once when forced."""
        self.life.running = False
        instances = self.fleet.instances
        for inst in instances:
            inst.stopping = True
            inst.restart_at = None
            if not inst.running:
                continue
            if self.life.forced:
                inst.kill()
            elif not inst.send_control(wire.STOP_RECORD) and inst.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(inst.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while any(inst.running for inst in instances):
            if time.monotonic() >= deadline:
                for inst in instances:
                    inst.kill()
                deadline = float("inf")
            self.committer.read_acks()
            self.reap_instances()
            time.sleep(0.01)

