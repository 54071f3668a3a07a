"""The supervisor: one consumer, one loop, every agent instance fed through its ring.

Read :meth:`Supervisor.run` and :meth:`Supervisor.loop` top to bottom; every state
change is a named method (gunicorn's arbiter is the model). The loop is single-threaded;
signal handlers only queue the signal and write a byte to a self-pipe.

One turn of the loop: handle queued signals → start instances that are due → fetch a
batch and dispatch it (router → wire → ring) → move pending records into rings that
have room → read acks → notice dead instances (pidfd) → commit on the interval.

The data path (fetch, dispatch, pump, pause/resume) is the :class:`DataPath` mixin in
``supervisor/daemon/datapath.py``; this module is the lifecycle around it.

The invariant (DESIGN.md §2): an offset is committed only when every agent that got
the message acked it; the :class:`~supervisor.daemon.offsets.OffsetTracker` commits the
lowest unacked offset per partition, and each :class:`~supervisor.daemon.instances.Instance`
keeps the records it holds so a crash re-dispatches them.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import select
import signal
import time
from typing import Any

from confluent_kafka import Consumer

from supervisor.config.loader import Config, ConfigError, validate_agent_names
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.failures import FailedRecord, RecordFailures
from supervisor.daemon.group import GroupMember
from supervisor.daemon.instances import AgentRuntime, Instance
from supervisor.daemon.monitor import Monitor
from supervisor.daemon.moves import PartitionMoves
from supervisor.daemon.offsets import OffsetTracker
from supervisor.daemon.ops.operations import Operations
from supervisor.daemon.reload import Reloader
from supervisor.daemon.router import Router
from supervisor.daemon.topics import connection_settings, ensure_topics
from supervisor.daemon.zygote import Zygote, ZygoteError
from supervisor.transport import wire

__all__ = ["CONSUMER_TUNING", "Supervisor"]

log = logging.getLogger("agentd")

STOP_GRACE = 5.0       # after STOP, before SIGKILL

#: librdkafka defaults agentd changes for its consumer (``[kafka]`` overrides them).
#: librdkafka stops fetching while its queue holds ``queued.min.messages`` and looks
#: again only after ``fetch.queue.backoff.ms`` (default 1000 ms): the supervisor drains
#: a full queue in a fraction of that and then sat idle for the rest (2 instances: 150k
#: -> 300k msg/s). Memory stays bounded by the same queue limits and agentd's backlog.
CONSUMER_TUNING: dict[str, Any] = {"fetch.queue.backoff.ms": 50}


class Supervisor(DataPath):
    """Owns the broker connection, the zygote, every instance and the offsets."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.exit_code = 0
        self.running = True
        self.draining_until: float | None = None
        self.signals: list[int] = []
        self.tracker = OffsetTracker()
        self.agents: list[AgentRuntime] = []
        self.instances: list[Instance] = []
        self.topics: list[str] = []
        self.topic_index: dict[str, int] = {}
        self.subscriptions: dict[str, list[AgentRuntime]] = {}
        self.paused_by: dict[tuple[int, int], set[Instance]] = {}
        self.embedded: Any = None
        self.zygote: Zygote | None = None
        self.consumer: Consumer | None = None
        self.failures: RecordFailures | None = None
        self.bootstrap = config.bootstrap_servers or ""
        self.group = GroupMember(self)      # commits, partitions assigned and revoked
        self.moves = PartitionMoves()       # partitions between instances, order kept
        self.next_move_check = 0.0
        self.ops: Operations | None = None  # control socket, sd_notify, metrics
        self.reloader = Reloader(self)      # SIGHUP: canary zygote, then roll over
        self.monitor = Monitor(self)        # hung workers killed, old/big ones recycled
        self.forced = False                 # second SIGINT: no more waiting
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ================================================================= run

    def run(self) -> int:
        """Start everything, loop until stopped, stop everything; the exit code."""
        self.install_signal_handlers()
        self.ops = Operations(self)
        try:
            self.start_broker()
            self.start_zygote()
            self.create_topics()
            self.start_consumer()
            # Everything imported so far lives as long as the process: freeze it, so
            # the loop's full collections skip it (the first took 13 ms, then 0.4 ms).
            gc.collect()
            gc.freeze()
            self.ops.on_ready()
            self.loop()
        except ConfigError:  # found only once the app is imported (agent tables)
            self.exit_code = 2
            raise
        except BaseException:
            self.exit_code = self.exit_code or 1
            raise
        finally:
            self.shutdown()
        return self.exit_code

    def loop(self) -> None:
        busy = False
        while self.running:
            self.handle_signals()
            self.spawn_due_instances()
            fetched = self.fetch(busy)
            busy = self.pump_instances() or fetched
            busy = self.read_instances() or busy
            self.reap_instances()
            if self.moves.moving:
                self.finish_moves()
            self.reloader.poll()
            self.monitor.tick()
            self.group.commit_if_due(fetched_nothing=not fetched)
            if self.ops is not None:
                self.ops.tick()
            if self.failures is not None:
                self.failures.poll()
            if self.draining_until is not None and self.drained():
                self.running = False

    # ================================================================= start

    def start_broker(self) -> None:
        if self.config.embedded:
            from supervisor.devbrokers.embedded import EmbeddedBroker

            self.embedded = EmbeddedBroker()
            self.bootstrap = self.embedded.bootstrap
            log.info("embedded broker (in memory, not for production): bootstrap=%s",
                     self.bootstrap)

    def start_zygote(self) -> None:
        env = self.zygote_env(self.config)
        self.zygote = Zygote.start(list(self.config.app), env)
        self.config = validate_agent_names(self.config, [a.name for a in self.zygote.agents])
        for lane, spec in enumerate(self.zygote.agents):
            agent_config = self.config.agent(spec.name)
            count = agent_config.instances or spec.concurrency
            agent = AgentRuntime(spec.name, lane, spec.topics, agent_config, spec.app)
            agent.router = Router(agent_config.ordering, count)
            agent.instances = [Instance(agent, i) for i in range(count)]
            self.agents.append(agent)
            self.instances.extend(agent.instances)
            for topic in spec.topics:
                if topic not in self.topic_index:
                    self.topic_index[topic] = len(self.topics)
                    self.topics.append(topic)
                self.subscriptions.setdefault(topic, []).append(agent)
            log.info("agent %s: %d instance(s), ordering=%s, on_error=%s, topics %s",
                     spec.name, count, agent_config.ordering, agent_config.on_error,
                     ", ".join(spec.topics))
        if not self.topics:
            raise ConfigError("app", f"{' '.join(self.config.app)} defines no agents")

    def zygote_env(self, config: Config) -> dict[str, str]:
        """The environment of a zygote (and so of its instances): where Kafka is and how
        to connect (``[kafka]`` TLS/SASL keys for agentlib's clients), the log level."""
        client = connection_settings(self.bootstrap, config.kafka)
        del client["bootstrap.servers"]
        return {**os.environ, "AGENTD_BROKER": self.bootstrap,
                "AGENTD_KAFKA_CLIENT": json.dumps(client),
                "AGENTD_LOG_LEVEL": config.log_level}

    def create_topics(self) -> None:
        names = list(self.topics)
        for agent in self.agents:
            cfg = agent.config
            if cfg.on_error == "dead_letter" or (cfg.on_error == "retry"
                                                 and cfg.dead_letter_topic):
                names.extend(cfg.dead_letter_topic_for(t) for t in agent.topics)
        ensure_topics(names, bootstrap=self.bootstrap, embedded=self.embedded,
                      settings=connection_settings(self.bootstrap, self.config.kafka))

    def start_consumer(self) -> None:
        group = self.config.group_id or self.zygote_app_id()
        settings: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap, "group.id": group,
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            **CONSUMER_TUNING, "on_commit": self.group.on_commit, **dict(self.config.kafka)}
        self.consumer = Consumer(settings)
        self.consumer.subscribe(self.topics, on_assign=self.group.on_assign,
                                on_revoke=self.group.on_revoke, on_lost=self.group.on_revoke)
        self.failures = RecordFailures(self.bootstrap, self.on_failed_done, self.on_crash,
                                       connection_settings(self.bootstrap, self.config.kafka))
        self.group.next_commit = time.monotonic() + self.config.commit_interval
        log.info("consumer group %s subscribed to %s", group, ", ".join(self.topics))

    def zygote_app_id(self) -> str:
        assert self.zygote is not None
        return self.zygote.app_ids[0]

    def worker_settings(self, inst: Instance) -> dict[str, Any]:
        agent, cfg = inst.agent, inst.agent.config
        # An app's @app.task/@app.timer functions run once per supervisor: in instance
        # 0 of the app's first agent.
        first_of_app = next(a for a in self.agents if a.app == agent.app)
        return {"agent": agent.name, "topics": self.topics, "on_error": cfg.on_error,
                "run_app_tasks": first_of_app is agent and inst.index == 0,
                "dead_letter_topic": cfg.dead_letter_topic,
                "dead_letter_explicit": bool(cfg.dead_letter_topic),
                "max_retries": cfg.max_retries, "retry_backoff": cfg.retry_backoff,
                "shutdown_timeout": self.config.shutdown_timeout}

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
        if self.draining_until is not None:
            log.warning("second SIGINT: stopping now, committing only what was acked")
            self.exit_code = 1
            self.running = False
            self.forced = True
            return
        self.begin_drain("SIGINT")

    def handle_sighup(self) -> None:
        """Reload (supervisor/daemon/reload.py); one during a reload is queued behind it."""
        log.info("SIGHUP: reload %s", "queued behind the one running" if self.reloader.busy
                 else "requested")
        self.reloader.request()

    def begin_drain(self, why: str) -> None:
        """Stop fetching; the loop ends when everything dispatched is acked (or time)."""
        if self.draining_until is None:
            log.info("%s: draining (up to %.0fs)", why, self.config.shutdown_timeout)
            if self.ops is not None:
                self.ops.on_stopping()
            self.draining_until = time.monotonic() + self.config.shutdown_timeout

    def drained(self) -> bool:
        assert self.draining_until is not None
        if all(not inst.unacked for inst in self.instances):
            return True
        if time.monotonic() >= self.draining_until:
            left = sum(len(inst.unacked) for inst in self.instances)
            log.warning("shutdown_timeout reached with %d records in flight", left)
            return True
        return False

    # ================================================================= instance reports

    def read_instances(self) -> bool:
        """Drain every outbound ring: acks retire records; errors and stats noted."""
        got = False
        topics, tracker = self.topics, self.tracker
        unpack = wire.ACK_RECORD.unpack_from
        for inst in self.instances:
            records = inst.read_outbound()
            if not records:
                continue
            got = True
            lane = inst.agent.lane
            for record in records:
                if record[0] == wire.ACK:
                    _, tidx, partition, first, last = unpack(record)
                    inst.acked(tidx, partition, first, last)
                    tracker.acked((topics[tidx], partition), first, last, lane)
                else:
                    self.on_instance_report(inst, record)
        return got

    def on_instance_report(self, inst: Instance, record: bytes) -> None:
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
        elif kind == wire.RETIRED:
            inst.retired = True

    # ================================================================= instances

    def spawn_due_instances(self) -> None:
        """Start instances whose (re)start time has come, draining included: a crashed
        instance's records must still be processed for the drain to finish."""
        now = time.monotonic()
        for inst in self.instances:
            if inst.restart_at is not None and inst.restart_at <= now and self.running:
                assert self.zygote is not None
                try:
                    inst.spawn(self.zygote, self.worker_settings(inst))
                except ZygoteError as exc:
                    if self.zygote.proc.poll() is not None:
                        raise  # no zygote, no instances: stop (exit 1)
                    inst.crashes_in_row += 1
                    inst.restart_at = now + min(10.0, 0.1 * 2 ** inst.crashes_in_row)
                    log.error("%s: fork failed (%s); retrying", inst.label, exc)

    def reap_instances(self) -> None:
        """Notice dead instances at once (pidfds), re-dispatch what they held."""
        by_fd = {inst.pidfd: inst for inst in self.instances if inst.pidfd is not None}
        dead = [inst for inst in self.instances if inst.running and inst.pidfd is None]
        if by_fd:
            readable, _, _ = select.select(list(by_fd), [], [], 0)
            dead.extend(by_fd[fd] for fd in readable)
        statuses = dict(self.zygote.take_exits()) if self.zygote is not None else {}
        for inst in dead:
            self.handle_instance_death(inst, statuses.get(inst.pid or -1))

    def handle_instance_death(self, inst: Instance, status: int | None) -> None:
        self.read_instances()  # acks written just before the death still count
        suspect = inst.lone_suspect()
        how = f"exit status {os.waitstatus_to_exitcode(status)}" if status is not None \
            else "exited"
        inst.died()
        if not self.running or inst.stopping:
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
                self.fail_record(inst.agent, self.topics[suspect[0]], encoded,
                                 f"poison message: its instance died {crashes} times "
                                 f"processing it alone")

    # ================================================================= failures

    def on_failed_done(self, record: FailedRecord) -> None:
        self.tracker.acked((record.topic, record.partition), record.offset, record.offset,
                           record.lane)

    def on_crash(self, reason: str) -> None:
        """The ``crash`` policy fired: stop now, non-zero, committing only what was done."""
        log.critical("stopping: %s", reason)
        self.exit_code = 1
        self.running = False

    # ================================================================= stop

    def shutdown(self) -> None:
        """Commit what was acked, stop instances, leave the group, stop the broker."""
        self.reloader.close(0.0 if self.forced else self.config.shutdown_timeout)
        if self.consumer is not None:
            self.group.commit(asynchronous=False)
        self.stop_instances()
        if self.consumer is not None:
            self.running = False
            self.consumer.close()
            self.consumer = None
        if self.failures is not None:
            self.failures.close()
        if self.zygote is not None:
            self.zygote.stop()
        self.reloader.stop_old_zygote()
        if self.embedded is not None:
            self.embedded.close()
        if self.ops is not None:
            self.ops.close()
        log.info("stopped (exit %d)", self.exit_code)

    def stop_instances(self) -> None:
        """STOP to each instance (SIGTERM if its ring is full: the worker drains on
        either); SIGKILL whatever has not exited after a grace, or at once when forced."""
        self.running = False
        for inst in self.instances:
            inst.stopping = True
            inst.restart_at = None
            if not inst.running:
                continue
            if self.forced:
                inst.kill()
            elif not inst.send_control(wire.STOP_RECORD) and inst.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(inst.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while any(inst.running for inst in self.instances):
            if time.monotonic() >= deadline:
                for inst in self.instances:
                    inst.kill()
                deadline = float("inf")
            self.read_instances()
            self.reap_instances()
            time.sleep(0.01)
