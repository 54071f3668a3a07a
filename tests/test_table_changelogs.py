"""Which topic's partitions a table's changelog gets (unit: no Kafka, no processes).

A table is written in the partition of the record the agent's body is processing.
After a ``group_by`` that record comes from the repartition topic, not from the
agent's source topic, so the changelog must follow the repartition topic: a changelog
with the source's partitions (4) under a repartition topic of 8 has no partition for
half the rows (recovery failed with "Unknown partition" and the instance stalled).
"""

from __future__ import annotations

from supervisor.config.loader import loads
from supervisor.daemon.fleet import Fleet, changelogs_of, table_source
from supervisor.daemon.topics import DEFAULT_PARTITIONS
from supervisor.daemon.zygote import AgentSpec

SOURCE = "page_views"
REPARTITION = "examples.page_views.count_page_views-page_views-PageView.id-repartition"
CHANGELOG = "page-views-page_views-changelog"
TABLE = {"name": "page_views", "changelog": CHANGELOG, "partitions": None, "global": False}


def spec(topics: tuple[str, ...]) -> AgentSpec:
    return AgentSpec(name="count_page_views", topics=topics, concurrency=1,
                     app="page-views", tables=(TABLE,))


def test_a_table_behind_group_by_follows_the_repartition_topic_not_the_source():
    grouped = spec((SOURCE, REPARTITION))
    assert table_source(grouped) == REPARTITION
    # The source is declared with 4 partitions; the repartition topic is not declared,
    # so it is created with the default, and so is the changelog.
    assert changelogs_of(grouped, "partition", {SOURCE: 4}) == {CHANGELOG: DEFAULT_PARTITIONS}
    assert changelogs_of(grouped, "partition", {SOURCE: 4, REPARTITION: 6}) == {CHANGELOG: 6}


def test_an_undeclared_changelog_follows_the_repartition_topics_count_in_kafka():
    fleet = Fleet(loads('app = "m"\n'), "")
    grouped = spec((SOURCE, REPARTITION))
    changelogs = changelogs_of(grouped, "partition", {})
    fleet.changelogs.update(changelogs)
    fleet.note_undeclared(grouped, changelogs)
    assert fleet.changelog_sources == {CHANGELOG: REPARTITION}
    fleet.follow_sources({SOURCE: 4, REPARTITION: 8})
    assert fleet.changelogs[CHANGELOG] == 8


def test_a_table_without_group_by_follows_its_source_topic():
    plain = spec((SOURCE,))
    assert table_source(plain) == SOURCE
    assert changelogs_of(plain, "partition", {SOURCE: 4}) == {CHANGELOG: 4}
