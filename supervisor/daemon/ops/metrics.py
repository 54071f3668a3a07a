"""The optional Prometheus endpoint (``[metrics] port = 9100``; extra ``agentd[metrics]``).

Why a custom collector over a published snapshot instead of updating Counter/Gauge
objects in the data path: the counts already exist (workers count what they
processed, the supervisor counts restarts, the tracker knows lag), so copying them
into metric objects on every message would cost the hot loop for nothing. The loop
builds a status document once a second (``supervisor.daemon.ops.snapshot``) and swaps it in
here; a scrape, served by prometheus-client's HTTP thread, only reads that document,
so it never races the loop. Commit latency is a real histogram, observed by the
loop when a commit is answered (prometheus-client metrics are thread-safe).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from supervisor.config.loader import ConfigError, MetricsConfig

__all__ = ["MetricsServer"]

log = logging.getLogger("agentd.metrics")

COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# (name, help, kind, status key): per instance, labelled agent + instance index.
INSTANCE_METRICS = (
    ("agentd_instance_processed", "Records this instance finished (sinks included).",
     "counter", "processed"),
    ("agentd_instance_errors", "Records this instance reported an error for.",
     "counter", "errors"),
    ("agentd_instance_restarts", "Times this instance was restarted.", "counter", "restarts"),
    ("agentd_instance_in_flight", "Records given to this instance and not yet acked.",
     "gauge", "in_flight"),
    ("agentd_instance_rss_bytes", "Resident memory of this instance's process.",
     "gauge", "rss_bytes"),
    ("agentd_instance_cpu_percent", "CPU use of this instance's process since the last "
     "sample (100 = one core).", "gauge", "cpu_percent"),
)
AGENT_METRICS = (
    ("agentd_agent_processed", "Records this agent finished, all instances.", "counter",
     "processed"),
    ("agentd_agent_errors", "Records this agent reported an error for.", "counter", "errors"),
    ("agentd_agent_restarts", "Instance restarts of this agent.", "counter", "restarts"),
    ("agentd_agent_in_flight", "Records given to this agent's instances, not yet acked.",
     "gauge", "in_flight"),
    ("agentd_agent_instances", "Instances configured for this agent.", "gauge", "instances"),
    ("agentd_agent_lag", "Messages behind the high watermark on the agent's partitions.",
     "gauge", "lag"),
)

# (name, help, kind, key of an instance's "transaction"): exactly once only.
TRANSACTION_METRICS = (
    ("agentd_transactions_committed", "Transactions this instance committed.", "counter",
     "commits"),
    ("agentd_transactions_aborted", "Transactions of this instance aborted (one per "
     "process death: its successor aborts what it left open).", "counter", "aborted"),
    ("agentd_transaction_held_records", "Records in this instance's open transaction.",
     "gauge", "held_records"),
    ("agentd_transaction_age_seconds", "Age of this instance's open transaction.",
     "gauge", "open_age_s"),
)

# (name, help, status key): per table shard, labelled table, partition, state, instance.
TABLE_METRICS = (
    ("agentd_table_keys", "Rows in this table partition's copy (RocksDB: its estimate).",
     "keys"),
    ("agentd_table_bytes", "Bytes this table partition's copy takes on disk.", "bytes"),
    ("agentd_table_changelog_lag", "Changelog offsets this copy has not applied yet.",
     "changelog_lag"),
)


class _SnapshotCollector:
    """Turns the latest status document into metric families at scrape time."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        doc = self.doc  # one read: the loop swaps whole documents, never edits one
        if doc is None:
            return
        families = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
        for name, text, kind, key in INSTANCE_METRICS:
            family = families[kind](name, text, labels=["agent", "instance"])
            for inst in doc["instances"]:
                if inst[key] is not None:
                    family.add_metric([inst["agent"], str(inst["index"])], inst[key])
            yield family
        for name, text, kind, key in AGENT_METRICS:
            family = families[kind](name, text, labels=["agent"])
            for agent in doc["agents"]:
                family.add_metric([agent["name"]], agent[key])
            yield family
        lag = GaugeMetricFamily("agentd_partition_lag", "High watermark minus committed "
                                "offset (or, before a commit, the consumer's position).",
                                labels=["topic", "partition"])
        for part in doc["partitions"]:
            if part["lag"] is not None:
                lag.add_metric([part["topic"], str(part["partition"])], part["lag"])
        yield lag
        yield from _table_families(doc)
        yield from _channel_families(doc)
        yield from _transaction_families(doc)
        yield GaugeMetricFamily("agentd_up", "1 while the supervisor is consuming.",
                                value=1 if doc["state"] in ("running", "reloading") else 0)


def _channel_families(doc: dict[str, Any]) -> Iterator[Any]:
    """Status's ``channels[]``: whether a channel's senders wait, and what waits for
    each reading instance in the daemon (``channelflow.py``)."""
    from prometheus_client.core import GaugeMetricFamily

    full = GaugeMetricFamily("agentd_channel_full", "1 while the channel's senders wait "
                             "for a reader that is behind.", labels=["channel"])
    waiting = GaugeMetricFamily("agentd_channel_waiting", "The channel's messages waiting "
                                "in the daemon for this reading instance.",
                                labels=["channel", "instance"])
    for row in doc.get("channels", []):
        full.add_metric([row["channel"]], 1 if row["full"] else 0)
        for index, count in enumerate(row["waiting"]):
            waiting.add_metric([row["channel"], str(index)], count)
    yield full
    yield waiting


def _table_families(doc: dict[str, Any]) -> Iterator[Any]:
    """The table gauges (one sample per copy of a partition: its owner, a standby) and
    the rows recovered from changelogs since the daemon started."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    rows = doc.get("tables", [])
    for name, text, key in TABLE_METRICS:
        family = GaugeMetricFamily(name, text,
                                   labels=["table", "partition", "state", "instance"])
        for row in rows:
            if row.get(key) is not None:
                instance = "" if row.get("instance") is None else str(row["instance"])
                family.add_metric([row["table"], str(row["partition"]), row["state"],
                                   instance], row[key])
        yield family
    recovered = CounterMetricFamily("agentd_table_recovered_rows", "Changelog rows "
                                    "replayed into this table partition's copies.",
                                    labels=["table", "partition"])
    for row in doc.get("table_recovery", []):
        recovered.add_metric([row["table"], str(row["partition"])], row["recovered_rows"])
    yield recovered


def _transaction_families(doc: dict[str, Any]) -> Iterator[Any]:
    """Under exactly once: each instance's transactions committed and aborted, and the
    open one's held records and age (nothing under at least once)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    mine = [inst for inst in doc["instances"] if "transaction" in inst]
    if not mine:
        return
    families = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
    for name, text, kind, key in TRANSACTION_METRICS:
        family = families[kind](name, text, labels=["agent", "instance"])
        for inst in mine:
            value = inst["transaction"][key]
            if value is not None:
                family.add_metric([inst["agent"], str(inst["index"])], value)
        yield family


class MetricsServer:
    """A prometheus-client registry and HTTP server in a daemon thread."""

    def __init__(self, config: MetricsConfig) -> None:
        """Start serving on ``config.host:config.port``; a ``ConfigError`` (so the CLI
        prints one line and exits 2) when the library is missing or the port is taken."""
        try:
            from prometheus_client import CollectorRegistry, Histogram, start_http_server
        except ImportError:
            raise ConfigError("metrics.port", "needs prometheus-client: "
                              "pip install 'agentd[metrics]'") from None
        assert config.port is not None
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = _SnapshotCollector()
        self.registry.register(self.collector)
        self.commit_latency = Histogram(
            "agentd_commit_latency_seconds", "From an offset commit request to the "
            "broker's answer.", buckets=COMMIT_BUCKETS, registry=self.registry)
        try:
            self._server, self._thread = start_http_server(config.port, config.host,
                                                           registry=self.registry)
        except OSError as exc:
            raise ConfigError("metrics.port", f"cannot serve on {config.host}:{config.port}: "
                              f"{exc.strerror or exc}") from None
        log.info("metrics on http://%s:%d/metrics", config.host, config.port)

    def publish(self, doc: dict[str, Any]) -> None:
        """Make ``doc`` (a fresh status document, never mutated later) the scraped one."""
        self.collector.doc = doc

    def observe_commit(self, seconds: float) -> None:
        self.commit_latency.observe(seconds)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
