"""The fleet: the app's agents, their instances, the zygote they fork from, and the
config they run under.

Everything the daemon's parts need to know about *who runs what* lives here, so each
part gets this object instead of the whole supervisor: the data path routes to
``instances`` by ``subscriptions``, the commit leg reads their acks, the reloader swaps
the zygote and config (:meth:`Fleet.adopt`), the monitor watches the processes. The
fleet starts and reaps processes; what a death means for the records an instance held
is the supervisor's to decide.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import time
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from supervisor.config.loader import Config, ConfigError, validate_agent_names
from supervisor.daemon.channelflow import ChannelFlow
from supervisor.daemon.instances import CHANNEL_BOUND, AgentRuntime, Instance
from supervisor.daemon.leader import Leadership, leader_topic
from supervisor.daemon.router import Router
from supervisor.daemon.topics import (
    DEFAULT_PARTITIONS,
    SESSION_TUNING,
    daemon_client_settings,
)
from supervisor.daemon.zygote import AgentSpec, Zygote, ZygoteError
from supervisor.transport import wire
from supervisor.transport.flags import FLAGS_FD_ENV

__all__ = ["Fleet"]

log = logging.getLogger("agentd")


class Fleet:
    """The agents and instance processes of one daemon, and the topics they read."""

    def __init__(self, config: Config, bootstrap: str) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.zygote: Zygote | None = None
        self.agents: list[AgentRuntime] = []
        self._unread_channels: set[str] = set()
        #: which channels' senders wait for a slow reader (``channelflow.py``)
        self.flow = ChannelFlow()
        #: the leader election, when the app has on_leader tasks or timers
        self.leadership: Leadership | None = None
        #: instance label -> (pid, leadership) last told to that process
        self.told_leader: dict[str, tuple[int, bool]] = {}
        self.instances: list[Instance] = []
        #: every subscribed topic, in subscription order; a record names its topic by
        #: its index here (the wire format carries the index, not the name)
        self.topics: list[str] = []
        self.topic_index: dict[str, int] = {}
        #: topic → the agents reading it (each gets every record of the topic)
        self.subscriptions: dict[str, list[AgentRuntime]] = {}
        #: topic → the partition count the app declares for it (topics it reads, and
        #: sinks with ``partitions=``); a topic not here is created with the default
        self.declared_partitions: dict[str, int] = {}
        #: changelog topic → partitions (its source topic's), for the agents' tables
        self.changelogs: dict[str, int] = {}
        #: ``at_least_once`` or ``exactly_once`` (config, else the app's, else ALO)
        self.guarantee = "at_least_once"
        #: changelog → its source topic, where nothing declares the count (it follows
        #: the source topic's count in Kafka: :meth:`follow_sources`)
        self.changelog_sources: dict[str, str] = {}
        #: what the table keeper copies: one entry per table (supervisor/keeper)
        self.table_copies: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Start the zygote (it imports the app), then one runtime per agent it found."""
        self.zygote = Zygote.start(list(self.config.app), self.env_for(self.config))
        self.config = validate_agent_names(self.config, [a.name for a in self.zygote.agents])
        self.declared_partitions = declared_partitions(self.zygote.agents)
        for lane, spec in enumerate(self.zygote.agents):
            agent_config = self.config.agent(spec.name)
            changelogs = changelogs_of(spec, agent_config.ordering, self.declared_partitions)
            self.changelogs.update(changelogs)
            self.note_undeclared(spec, changelogs)
            self.note_table_copies(spec, changelogs)
            count = agent_config.instances or spec.concurrency
            agent = AgentRuntime(spec.name, lane, spec.topics, agent_config, spec.app,
                                 channels=spec.channels)
            agent.channel_bound = channel_bound(spec)
            agent.router = Router(agent_config.ordering, count)
            agent.instances = [Instance(agent, i) for i in range(count)]
            self.add(agent)
            log.info("agent %s: %d instance(s), ordering=%s, on_error=%s, topics %s",
                     spec.name, count, agent_config.ordering, agent_config.on_error,
                     ", ".join(spec.topics))
        if not self.topics:
            raise ConfigError("app", f"{' '.join(self.config.app)} defines no agents")
        self.guarantee = processing_guarantee(self.config, self.zygote.agents)
        self.follow_leader_work()
        if self.exactly_once:
            log.info("processing_guarantee = exactly_once: outputs, changelogs and offsets "
                     "commit in one Kafka transaction per instance")

    def follow_leader_work(self) -> None:
        """Join the leader election when the app has ``on_leader`` work, leave it when
        it has none: at start, and after a reload, which can add or remove such work."""
        assert self.zygote is not None
        wanted = any(spec.leader_work for spec in self.zygote.agents)
        if wanted and self.leadership is None:
            self.start_leadership()
        elif not wanted and self.leadership is not None:
            log.info("no on_leader tasks, timers or crontabs any more: leaving the leader "
                     "election")
            self.leadership.stop()
            self.leadership = None

    def start_leadership(self) -> None:
        """Join the leader election (supervisor/daemon/leader.py) with the data
        consumer's ``[kafka]`` settings, so its session timeout is the same."""
        app_id = self.app_id() or "agentd"
        group = self.config.group_id or app_id
        settings = {**SESSION_TUNING, **dict(self.config.kafka),
                    **daemon_client_settings(self.bootstrap, self.config.kafka)}
        self.leadership = Leadership(leader_topic(app_id), f"{group}-__leader", settings)
        self.leadership.start()

    def tell_leadership(self) -> None:
        """Once per loop turn: every process running an app's tasks knows the current
        leadership. Tracked per process, not per change: a reload's successor, forked
        before the election answered and attached later, would otherwise never hear it."""
        if self.leadership is None:
            return
        self.leadership.changed()  # what status shows
        leading = bool(self.leadership.told)
        for inst in self.instances:
            if inst.pid is None or not self.runs_app_tasks(inst):
                continue
            if self.told_leader.get(inst.label) != (inst.pid, leading):
                inst.queue_control(wire.encode_leader(leading))
                self.told_leader[inst.label] = (inst.pid, leading)

    def runs_app_tasks(self, inst: Instance) -> bool:
        """An app's @app.task/@app.timer functions run once per supervisor: in instance
        0 of the app's first agent."""
        first_of_app = next(a for a in self.agents if a.app == inst.agent.app)
        return first_of_app is inst.agent and inst.index == 0

    def close(self) -> None:
        """Leave the leader election (another daemon leads at once), stop the zygote."""
        if self.leadership is not None:
            self.leadership.stop()
        if self.zygote is not None:
            self.zygote.stop()
        self.flow.close()

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == "exactly_once"

    def note_undeclared(self, spec: AgentSpec, changelogs: Mapping[str, int]) -> None:
        source = table_source(spec)
        for table in spec.tables:
            if not table.get("partitions") and source not in self.declared_partitions:
                self.changelog_sources[str(table["changelog"])] = source

    def follow_sources(self, existing: Mapping[str, int]) -> None:
        """Undeclared changelog counts become their source topics' counts in Kafka."""
        for changelog, source in self.changelog_sources.items():
            if source in existing:
                self.changelogs[changelog] = existing[source]
                if changelog in self.table_copies:
                    self.table_copies[changelog]["partitions"] = existing[source]

    def note_table_copies(self, spec: AgentSpec, changelogs: Mapping[str, int]) -> None:
        """What the keeper needs of ``spec``'s tables: where their shards live, their
        changelogs, and which source topics' partitions decide who owns a shard."""
        for table in spec.tables:
            changelog = str(table["changelog"])
            copy = self.table_copies.setdefault(changelog, {
                "name": str(table["name"]), "changelog": changelog,
                "partitions": changelogs[changelog], "global": bool(table.get("global")),
                "memory": str(table.get("store") or "").startswith("memory"),
                "dir": str(self.config.table_dir / spec.app / str(table["name"])),
                "topics": []})
            copy["topics"] = sorted({*copy["topics"], table_source(spec)})

    def route_channel(self, record: bytes) -> int:
        """Hand a ``CHANNEL`` record to one instance of each agent reading its channel.

        By key (the same key, the same instance) when it has one, else round robin.
        Returns how many agents got it: 0 means nothing here reads the channel (or the
        message is too large for its readers' rings) and it is dropped (a channel is
        memory, as in Faust).
        """
        name = wire.channel_name(record)
        agents = [agent for agent in self.agents if name in agent.channels and agent.instances]
        if not agents:
            if name not in self._unread_channels:
                self._unread_channels.add(name)  # once per channel, not per message
                log.warning("channel %s: no agent of this daemon reads it; its messages "
                            "are dropped", name)
            return 0
        key = wire.decode_channel(record)[1].key
        return sum(self._hand_channel(agent, name, key, record) for agent in agents)

    def _hand_channel(self, agent: AgentRuntime, name: str, key: bytes | None,
                      record: bytes) -> bool:
        """Queue the message on the instance of ``agent`` that reads it; False if it
        cannot fit that instance's ring (one error line; writing it raised in the
        supervisor's loop and stopped the daemon)."""
        if key is not None:
            index = zlib.crc32(key) % len(agent.instances)
        else:
            index = agent.channel_turn % len(agent.instances)
            agent.channel_turn += 1
        reader = agent.instances[index]
        if len(record) > reader.max_record_size:
            log.error("channel %s: a message of %d bytes cannot reach agent %s (its "
                      "ring_size takes at most %d); dropped", name, len(record),
                      agent.name, reader.max_record_size)
            return False
        reader.queue_channel(record)
        if reader.channel_queued:  # it waits: is the channel full?
            self.flow.queued(name, reader)
        return True

    def add(self, agent: AgentRuntime) -> None:
        """One agent with its instances: its topics join the subscription."""
        self.agents.append(agent)
        self.instances.extend(agent.instances)
        for name in agent.channels:
            self.flow.add_channel(name)
        for topic in agent.topics:
            if topic not in self.topic_index:
                self.topic_index[topic] = len(self.topics)
                self.topics.append(topic)
            self.subscriptions.setdefault(topic, []).append(agent)

    def env_for(self, config: Config) -> dict[str, str]:
        """The environment of a zygote (and so of its instances): where Kafka is and how
        to connect (``[kafka]`` TLS/SASL keys for agentlib's clients), the log level."""
        client = daemon_client_settings(self.bootstrap, config.kafka)
        del client["bootstrap.servers"]
        return {**os.environ, "AGENTD_BROKER": self.bootstrap,
                "AGENTD_KAFKA_CLIENT": json.dumps(client),
                "AGENTD_LOG_LEVEL": config.log_level,
                FLAGS_FD_ENV: str(self.flow.shared_fd())}

    def app_id(self) -> str | None:
        """The first app's id (the default consumer group); None before the zygote."""
        if self.zygote is None or not self.zygote.app_ids:
            return None
        return self.zygote.app_ids[0]

    def adopt(self, zygote: Zygote, config: Config) -> None:
        """A reload's new code and config: instances forked from now on run them."""
        self.zygote = zygote
        self.config = config
        specs = {spec.name: spec for spec in zygote.agents}
        for agent in self.agents:
            agent.config = config.agent(agent.name)
            if agent.name in specs:
                agent.channel_bound = channel_bound(specs[agent.name])
        self.follow_leader_work()

    def worker_settings(self, inst: Instance) -> dict[str, Any]:
        agent, cfg = inst.agent, inst.agent.config
        return {"agent": agent.name, "topics": self.topics, "on_error": cfg.on_error,
                "run_app_tasks": self.runs_app_tasks(inst),
                "leader": self.leadership is not None and bool(self.leadership.told),
                "concurrency_index": inst.index,
                "dead_letter_topic": cfg.dead_letter_topic,
                "dead_letter_explicit": bool(cfg.dead_letter_topic),
                "table_dir": str(self.config.table_dir),
                "max_retries": cfg.max_retries, "retry_backoff": cfg.retry_backoff,
                "max_in_flight": cfg.max_in_flight,
                "shutdown_timeout": self.config.shutdown_timeout,
                "channel_flags": dict(self.flow.index),
                **self.transaction_settings(inst)}

    def transaction_settings(self, inst: Instance) -> dict[str, Any]:
        """Under exactly once: the instance's transactional id (stable across its
        restarts by this daemon on this host, so a successor fences its predecessor
        and aborts what it left open) and how often it commits."""
        if not self.exactly_once:
            return {}
        group = self.config.group_id or self.app_id() or "agentd"
        return {"exactly_once": True, "commit_interval": self.config.commit_interval,
                "group_id": group,
                "transactional_id": f"{self.daemon_identity()}-{inst.agent.name}-"
                                    f"{inst.index}"}

    def daemon_identity(self) -> str:
        """This daemon's name in its group, stable across its restarts: the prefix of
        its instances' transactional ids and its static member id (``group.instance.id``).
        Two daemons of one group on one host differ by their state_dir (each has its own
        control socket there); with the same ids they would fence each other."""
        group = self.config.group_id or self.app_id() or "agentd"
        daemon = zlib.crc32(str(self.config.state_dir).encode())
        return f"agentd-{group}-{socket.gethostname()}-{daemon:08x}"

    # ------------------------------------------------------------------ processes

    def spawn_due(self) -> None:
        """Start instances whose (re)start time has come; a failed fork backs off."""
        self.tell_leadership()
        now = time.monotonic()
        for inst in self.instances:
            if inst.restart_at is not None and inst.restart_at <= now:
                assert self.zygote is not None
                try:
                    inst.spawn(self.zygote, self.worker_settings(inst))
                except ZygoteError as exc:
                    if self.zygote.proc.poll() is not None:
                        raise  # no zygote, no instances: stop (exit 1)
                    inst.crashes_in_row += 1
                    inst.restart_at = now + min(10.0, 0.1 * 2 ** inst.crashes_in_row)
                    log.error("%s: fork failed (%s); retrying", inst.label, exc)

    def dead(self) -> list[tuple[Instance, int | None]]:
        """Instances whose process died since the last look (pidfds, never blocks),
        with their wait status when the zygote reaped them."""
        by_fd = {inst.pidfd: inst for inst in self.instances if inst.pidfd is not None}
        dead = [inst for inst in self.instances if inst.running and inst.pidfd is None]
        if by_fd:
            readable, _, _ = select.select(list(by_fd), [], [], 0)
            dead.extend(by_fd[fd] for fd in readable)
        statuses = dict(self.zygote.take_exits()) if self.zygote is not None else {}
        return [(inst, statuses.get(inst.pid or -1)) for inst in dead]

    def holds_any(self, partitions: set[tuple[int, int]]) -> bool:
        """Whether some instance holds an unacked record of these (topic index,
        partition) pairs."""
        return any((key[0], key[1]) in partitions
                   for inst in self.instances for key in inst.unacked)

    def unacked_total(self) -> int:
        return sum(len(inst.unacked) for inst in self.instances)


def processing_guarantee(config: Config, specs: Iterable[AgentSpec]) -> str:
    """The guarantee in force: the config's, else the apps' (Faust's setting), else at
    least once. Exactly once needs each topic read by one agent, with one instance per
    partition (``ordering = "partition"``): the instance commits its partitions' offsets
    in its own transactions. Anything else is a ``ConfigError`` naming the agent."""
    specs = list(specs)
    chosen = config.processing_guarantee or next(
        (s.guarantee for s in specs if s.guarantee in ("at_least_once", "exactly_once")),
        "at_least_once")
    if chosen != "exactly_once":
        return chosen
    readers: dict[str, str] = {}
    for spec in specs:
        ordering = config.agent(spec.name).ordering
        if ordering != "partition":
            raise ConfigError(f'agents."{spec.name}".ordering',
                              f'agent {spec.name}: processing_guarantee = "exactly_once" '
                              f'needs ordering = "partition" (one instance commits each '
                              f'partition), not {ordering!r}')
        for topic in spec.topics:
            if topic in readers:
                raise ConfigError("processing_guarantee",
                                  f"exactly_once: topic {topic!r} is read by agents "
                                  f"{readers[topic]} and {spec.name}; each topic may have "
                                  f"one reading agent (one committed offset per partition)")
            readers[topic] = spec.name
    return chosen


def declared_partitions(specs: Iterable[AgentSpec]) -> dict[str, int]:
    """Every agent's declared partition counts in one map; two agents declaring one
    topic with different counts is a ``ConfigError`` naming the topic."""
    counts: dict[str, int] = {}
    declared_by: dict[str, str] = {}
    for spec in specs:
        for topic, count in spec.partitions.items():
            if counts.setdefault(topic, count) != count:
                raise ConfigError("app", f"topic {topic!r} is declared with {counts[topic]} "
                                  f"partitions by {declared_by[topic]} and {count} by {spec.name}")
            declared_by.setdefault(topic, spec.name)
    return counts


def table_source(spec: AgentSpec) -> str:
    """The topic whose records write ``spec``'s tables: the last of its topics. An
    agent's topics are its own, then its ``group_by``/``through`` topics in order, and
    after a ``group_by`` the agent's body (where the table is written, in the record's
    partition) sees only the repartition topic's records: the changelog must have
    *its* partitions, not the original source's. (Own topics read together must be
    co-partitioned anyway, so the last of them is as good as the first.)"""
    return spec.topics[-1] if spec.topics else ""


def changelogs_of(spec: AgentSpec, ordering: str, declared: Mapping[str, int]
                  ) -> dict[str, int]:
    """The changelog topics of the tables ``spec``'s agent uses, with their partition
    counts: the table's ``partitions=``, else its source topic's (:func:`table_source`)
    declared count, else the default. A table needs each of its partitions written by
    one instance (``ordering = "partition"``), and its partitions must be its source
    topic's (Faust's co-partitioning rule): anything else is a ``ConfigError``."""
    counts: dict[str, int] = {}
    source = table_source(spec)
    for table in spec.tables:
        name = str(table["name"])
        wanted = table.get("partitions")
        source_count = declared.get(source)
        if table.get("global"):  # every host reads all of it: no owner, any ordering
            counts[str(table["changelog"])] = int(wanted or source_count or DEFAULT_PARTITIONS)
            continue
        if spec.channels:  # its events have no partition to shard the table by
            raise ConfigError("app", f"agent {spec.name} reads channel {spec.channels[0]} "
                              f"and uses table {name!r}: a table is sharded by the "
                              f"partitions of a Kafka topic and a channel has none (read "
                              f"a topic, or make the table global)")
        if ordering != "partition":
            raise ConfigError(f'agents."{spec.name}".ordering',
                              f'agent {spec.name} uses table {name!r}, which needs '
                              f'ordering = "partition" (one writer per partition), not '
                              f'{ordering!r}')
        if wanted and source_count and int(wanted) != source_count:
            raise ConfigError("app", f"table {name!r} has {wanted} partitions but its "
                              f"source topic {source!r} has {source_count}: they must be "
                              f"equal (Faust's co-partitioning rule)")
        counts[str(table["changelog"])] = int(wanted or source_count or DEFAULT_PARTITIONS)
    return counts


def channel_bound(spec: AgentSpec) -> int:
    """How many of its channel's messages may wait for one of the agent's instances:
    the app's ``maxsize`` (``zygote.py``), else Faust's default."""
    return spec.channel_maxsize or CHANNEL_BOUND
