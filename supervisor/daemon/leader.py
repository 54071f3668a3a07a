"""Which daemon of a group runs the app's ``on_leader=True`` tasks and timers.

Faust's way: a one-partition topic, ``<app_id>-__assignor-__leader``, that every
worker of the group subscribes to; whoever is assigned its partition 0 is the leader,
and a rebalance (a daemon joining, leaving, or dying past the session timeout) moves
it. Here a small consumer of its own, on a thread, subscribes to that topic in the
group ``<group>-__leader`` (its own group, so that joining it never rebalances the
data group). It reads nothing; it only heartbeats and hears its assignment. The
supervisor's loop asks :meth:`Leadership.changed` each turn and tells the instance
that runs the app's tasks (a ``LEADER`` record). See docs/decisions.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["Leadership", "leader_topic"]

log = logging.getLogger("agentd")

#: how long one poll of the leader consumer waits (its callbacks run inside poll)
POLL_SECONDS = 0.2


def leader_topic(app_id: str) -> str:
    """Faust's leader topic name for ``app_id`` (``app.conf.leader_topic``)."""
    return f"{app_id}-__assignor-__leader"


class Leadership:
    """A thread that holds this daemon's membership of the leader group."""

    def __init__(self, topic: str, group: str, settings: Mapping[str, Any]) -> None:
        self.topic = topic
        self.group = group
        self._settings = dict(settings)
        self._leader = False
        self._told: bool | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentd-leader", daemon=True)

    @property
    def is_leader(self) -> bool:
        """Whether this daemon holds the leader partition now."""
        return self._leader

    @property
    def told(self) -> bool | None:
        """The leadership last handed out by :meth:`changed` (what instances know)."""
        return self._told

    def start(self) -> None:
        self._thread.start()

    def changed(self) -> bool | None:
        """The leadership if it changed since the last call (the first call included)."""
        now = self._leader
        if now == self._told:
            return None
        self._told = now
        return now

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the group at once (the next daemon leads without waiting for the
        session timeout)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient, NewTopic

        from supervisor.devbrokers.embedded import is_mock_cluster
        connection = {k: v for k, v in self._settings.items() if k != "group.id"}
        try:
            admin = AdminClient({k: v for k, v in connection.items()
                                 if not k.startswith(("session.", "heartbeat."))})
            if is_mock_cluster(admin.list_topics(timeout=10).cluster_id):
                self._lead_alone()
                return
            for future in admin.create_topics([NewTopic(self.topic, 1)]).values():
                try:
                    future.result(10)
                except Exception as exc:  # it exists: another daemon made it
                    log.debug("leader topic %s: %s", self.topic, exc)
            consumer = Consumer({**connection, "group.id": self.group,
                                 "enable.auto.commit": False})
        except Exception as exc:
            log.error("leader election cannot start (%s): on_leader tasks and timers "
                      "do not run on this daemon", exc)
            return
        log.info("on_leader tasks/timers: electing a leader in group %s (topic %s)",
                 self.group, self.topic)
        consumer.subscribe([self.topic], on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not self._stop.is_set():
                consumer.poll(POLL_SECONDS)
        finally:
            self._leader = False
            consumer.close()

    def _lead_alone(self) -> None:
        """librdkafka's mock cluster (the embedded broker, a development setup) cannot
        create the leader topic (no CreateTopics): this daemon leads until it stops."""
        log.info("leader of group %s: the mock cluster cannot elect, so this daemon "
                 "runs the on_leader tasks and timers", self.group)
        self._leader = True
        self._stop.wait()
        self._leader = False

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if any(tp.topic == self.topic and tp.partition == 0 for tp in partitions):
            self._leader = True
            log.info("leader of group %s: on_leader tasks and timers run here", self.group)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        if self._leader and any(tp.partition == 0 for tp in partitions):
            self._leader = False
            log.info("no longer the leader of group %s", self.group)
