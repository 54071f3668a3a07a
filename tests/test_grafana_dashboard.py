"""The shipped Grafana dashboard (contrib/grafana/agentd.json) queries only metrics
agentd really exports: every metric name in its PromQL expressions must appear in a
scrape of the metrics module's registry fed a status document with every kind of row
(instance, agent, partition, table copy, recovery, transaction), so renaming a metric
without the dashboard (or the other way round) fails here instead of going blank."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.daemon.ops import metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "contrib" / "grafana" / "agentd.json"

# Identifiers in PromQL that are not metric names.
PROMQL_WORDS = {"sum", "by", "rate", "increase", "max", "min", "avg", "histogram_quantile",
                "label_values", "le", "agent", "instance", "job", "table", "state", "topic",
                "partition", "without", "on", "ignoring", "count"}


def exported_sample_names() -> set[str]:
    """Every sample name one scrape of the real collector yields for a full document."""
    doc = {
        "state": "running",
        "instances": [{"agent": "a.b", "index": 0, "processed": 1, "errors": 0, "restarts": 0,
                       "in_flight": 0, "rss_bytes": 1, "cpu_percent": 0.0,
                       "transaction": {"commits": 1, "aborted": 0, "held_records": 0,
                                       "open_age_s": 0.0}}],
        "agents": [{"name": "a.b", "processed": 1, "errors": 0, "restarts": 0,
                    "in_flight": 0, "instances": 1, "lag": 0}],
        "partitions": [{"topic": "t", "partition": 0, "lag": 0}],
        "tables": [{"table": "x", "partition": 0, "state": "active", "instance": 0,
                    "keys": 1, "bytes": 1, "changelog_lag": 0}],
        "table_recovery": [{"table": "x", "partition": 0, "recovered_rows": 1}],
    }
    registry = CollectorRegistry(auto_describe=False)
    collector = metrics._SnapshotCollector()
    collector.doc = doc
    registry.register(collector)
    Histogram("agentd_commit_latency_seconds", "", buckets=metrics.COMMIT_BUCKETS,
              registry=registry).observe(0.01)
    text = generate_latest(registry).decode()
    return {sample.name for family in text_string_to_metric_families(text)
            for sample in family.samples}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dash["panels"] for target in panel["targets"]]
    exprs += [var["query"]["query"] for var in dash["templating"]["list"]
              if isinstance(var.get("query"), dict)]
    return exprs


def metric_names(expr: str) -> set[str]:
    """Identifiers outside label matchers ``{...}`` and strings that are not PromQL words."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    return {word for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)
            if word not in PROMQL_WORDS}


def test_every_metric_the_dashboard_queries_is_exported():
    exported = exported_sample_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used, "no metric names found in the dashboard"
    assert used <= exported, f"dashboard queries metrics agentd does not export: " \
                             f"{sorted(used - exported)}"


def test_the_dashboard_covers_every_exported_family():
    """Each exported family has a panel (histograms through their _bucket/_sum/_count)."""
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", name)
                for name in exported_sample_names()}
    covered = {re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name in used}
    assert families <= covered, f"no panel for {sorted(families - covered)}"
