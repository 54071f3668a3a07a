"""The daemon's one group consumer: how it is built, and built again after a fatal error.

Each daemon is a static group member by default (KIP-345, ``group.instance.id`` from
:meth:`Fleet.daemon_identity`: docs/decisions.md). A static member can be *fenced*: the
coordinator gives its instance id to a newer join and answers the old member id with
``FENCED_INSTANCE_ID``, which librdkafka raises as a fatal consumer error; that consumer
never fetches again. It happens to a consumer whose own rejoin after a broker restart
races a request still carrying its previous member id (seen in fault row 24, and
reported against librdkafka: confluent-kafka-go #494), and to two daemons configured with
the same identity. A daemon keeping the dead consumer would stall without a word, so
:meth:`GroupConsumer.replace` builds a new one:

1. the partitions it had are handled as lost (:meth:`GroupMember.on_lost`: their
   in-flight work is kept and fed on from where it was if the group gives them back;
   under exactly once they are revoked, and the instances' transactions of the old
   member are fenced and done again);
2. a new consumer with the same settings subscribes; as the same static member it takes
   the partitions back without a rebalance of the other members;
3. the old consumer is closed; the rebalance callbacks it may still make are ignored
   (:class:`GroupMember` acts only on the current consumer).

Rebuilds back off (:data:`REJOIN_BACKOFF`, doubling up to :data:`REJOIN_BACKOFF_MAX`)
so that two daemons sharing one identity log each fence instead of spinning.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError

from supervisor.config.loader import Config
from supervisor.daemon.commit import Committer
from supervisor.daemon.datapath import DataPath
from supervisor.daemon.failures import RecordFailures
from supervisor.daemon.fetchwatch import STATS_INTERVAL_MS
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.group import GroupMember
from supervisor.daemon.topics import SESSION_TUNING, connection_settings, daemon_client_settings
from supervisor.daemon.transactions import CONSUMER_SETTINGS as TXN_CONSUMER_SETTINGS
from supervisor.daemon.transactions import GroupFeed
from supervisor.devbrokers.embedded import MOCK_CONSUMER_TUNING, mock_cluster_at

__all__ = ["CONSUMER_TUNING", "REJOIN_BACKOFF", "GroupConsumer"]

log = logging.getLogger("agentd")

#: librdkafka defaults agentd changes (``[kafka]`` overrides them): fetch backoff 1000 ->
#: 50 ms (the supervisor drained a full queue long before; 150k -> 300k msg/s); a fetch
#: of caught-up partitions waits 500 -> 100 ms at the broker (a resumed partition's
#: fetch waits behind it) and the prefetch is 100,000 -> 20,000 messages (a pause throws
#: away what was prefetched for its partitions): docs/decisions.md, issue 21's resume
#: stall; 6 s sessions.
CONSUMER_TUNING: dict[str, Any] = {"fetch.queue.backoff.ms": 50, "fetch.wait.max.ms": 100,
                                   "queued.min.messages": 20_000, **SESSION_TUNING}
#: Seconds before the first rebuild after a fatal error, and the most between two.
REJOIN_BACKOFF, REJOIN_BACKOFF_MAX = 1.0, 60.0


class GroupConsumer:
    """Builds the daemon's consumer into the data path and the committer, and rebuilds it."""

    def __init__(self, fleet: Fleet, datapath: DataPath, committer: Committer,
                 group: GroupMember, *, embedded: bool) -> None:
        self.fleet = fleet
        self.datapath = datapath
        self.committer = committer
        self.group = group
        self.embedded = embedded
        self.txfeed: GroupFeed | None = None  # exactly once: group metadata to instances
        self.rejoins = 0
        self._backoff = REJOIN_BACKOFF
        self._next_rejoin = 0.0

    @property
    def config(self) -> Config:
        return self.fleet.config

    def group_id(self) -> str:
        return self.config.group_id or self.fleet.app_id() or "agentd"

    def membership(self) -> dict[str, Any]:
        """A static member named by :meth:`Fleet.daemon_identity`, except under exactly
        once (docs/decisions.md); on librdkafka's mock cluster its own tuning."""
        settings = connection_settings(self.fleet.bootstrap, self.config.kafka)
        if self.embedded or mock_cluster_at(settings):
            return dict(MOCK_CONSUMER_TUNING)
        if self.fleet.exactly_once:  # dynamic: fault row 24 stalled static (decisions.md)
            return {}
        return {"group.instance.id": self.fleet.daemon_identity()}

    def settings(self) -> dict[str, Any]:
        """The consumer's librdkafka settings: agentd's, then the config's ``[kafka]``
        (``group.instance.id = ""`` there makes a dynamic member)."""
        settings: dict[str, Any] = {
            **daemon_client_settings(self.fleet.bootstrap, self.config.kafka),
            "group.id": self.group_id(), "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            **CONSUMER_TUNING, **self.membership(),
            "on_commit": self.committer.on_commit, **self.statistics(),
            **dict(self.config.kafka)}
        if self.fleet.exactly_once:  # the instances commit offsets in their transactions
            settings.update(TXN_CONSUMER_SETTINGS)
        return {k: v for k, v in settings.items() if v != "" or k != "group.instance.id"}

    def statistics(self) -> dict[str, Any]:
        """librdkafka's statistics, for the fetch watch (fetchwatch.py), if it runs."""
        watch = self.group.fetchwatch
        if watch is None:
            return {}
        return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": watch.on_stats}

    def start(self) -> None:
        """The first consumer and the commit interval."""
        fleet = self.fleet
        if fleet.exactly_once:
            self.committer.transactional = True
            self.txfeed = self.group.txfeed = GroupFeed(fleet)
        self.subscribe()
        self.committer.start_interval()
        log.info("consumer group %s subscribed to %s", self.group_id(),
                 ", ".join(fleet.topics))

    def failures(self, on_crash: Any) -> RecordFailures:
        bootstrap = self.fleet.bootstrap
        return RecordFailures(bootstrap, self.committer.failed_done, on_crash,
                              daemon_client_settings(bootstrap, self.config.kafka))

    def subscribe(self) -> Consumer:
        consumer = Consumer(self.settings())
        self.datapath.consumer = self.committer.consumer = consumer
        consumer.subscribe(self.fleet.topics, on_assign=self.group.on_assign,
                           on_revoke=self.group.on_revoke, on_lost=self.group.on_lost)
        return consumer

    # ------------------------------------------------------------------ fatal errors

    def replace_if_fatal(self, *, now: float | None = None) -> bool:
        """Once per loop turn: a consumer that reported a fatal error is replaced (when
        the backoff allows). True when it was."""
        error = self.datapath.fatal
        if error is None:
            return False
        now = time.monotonic() if now is None else now
        if now < self._next_rejoin:
            return False
        self.datapath.fatal = None
        self.replace(error)
        self._next_rejoin = now + self._backoff
        self._backoff = min(self._backoff * 2, REJOIN_BACKOFF_MAX)
        return True

    def replace(self, error: KafkaError) -> None:
        """Steps 1-3 of the module's docstring."""
        old = self.datapath.consumer
        assert old is not None
        fenced = "fenced" in error.str().lower()
        log.error("consumer: fatal error (%s); a new consumer rejoins group %s%s", error.str(),
                  self.group_id(), " (librdkafka can fence itself after a broker restart; "
                  "two daemons with one identity, host name and state_dir, fence each other "
                  "every time)" if fenced else "")
        held = self.group.held()
        if held:
            self.group.on_lost(old, held)
        self.subscribe()
        with contextlib.suppress(Exception):
            old.close()
        self.rejoins += 1
