"""The guide's table examples under ``agentd start`` with two instances, on real Kafka.

``examples/word_count.py`` (a table written by an agent fed by another agent) and
``examples/page_views.py`` (a tumbling windowed table behind a ``group_by``) run as
they are written: the config names only the app and the instance counts. Counts must
equal the input's exactly, in the changelog and in the shards on disk.

The topics and the app ids are the examples' own, so on a kept broker
(``AGENTD_TEST_BOOTSTRAP``) they carry earlier runs: the consumer group is the app id
(agentd's default, as Faust's), so a run reads only what was produced since the last
one, and the changelog already holds the earlier counts. The check is therefore on
the change: counts after minus counts before equal this run's input.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, wait_until
from confluent_kafka import KafkaException
from tablekit import shard_counts, shard_rows

from supervisor.devbrokers.devbroker import create_topics

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "table", "count"]


def latest_rows(bootstrap: str, topic: str) -> dict[str, int]:
    """The latest row per key of a changelog, keys as the JSON text they are stored as;
    empty if the topic does not exist yet (a fresh broker)."""
    try:
        records = kafkatools.read_to_end(bootstrap, topic)
    except KafkaException:
        return {}
    rows: dict[str, int] = {}
    for record in records:
        key = record.key.decode() if record.key else ""
        if record.value is None:
            rows.pop(key, None)
        else:
            rows[key] = json.loads(record.value)
    return rows


def run_example(tmp_path: Path, bootstrap: str, app: str, agents: list[str],
                done: Callable[[], bool]) -> Agentd:
    """``agentd start`` the example with two instances of each agent until ``done``."""
    settings = {"app": app, "broker": f"kafka://{bootstrap}", "commit_interval": 0.2,
                "table_dir": str(tmp_path / "tables")}
    with Agentd(tmp_path, settings, agents={name: {"instances": 2} for name in agents}) \
            as daemon:
        daemon.wait_consuming()
        wait_until(lambda: daemon.assert_running() or done(), 120, "the counts")
        time.sleep(1.0)  # a count still growing past the input would show now
        assert daemon.stop() == 0, daemon.log()[-3000:]
    assert "Traceback" not in daemon.log()
    return daemon


@pytest.mark.kafka
def test_word_count_example_counts_every_word_exactly_with_two_instances(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    changelog = "word-counts-word_counts-changelog"
    create_topics(kafka_bootstrap, {"posts": 4})
    before = {json.loads(k): v for k, v in latest_rows(kafka_bootstrap, changelog).items()}
    rng = random.Random(18)
    posts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(400)]
    kafkatools.produce(kafka_bootstrap, "posts", [(None, json.dumps(p)) for p in posts])
    expected = Counter(before) + Counter(word for post in posts for word in post.split())

    def counted() -> dict[str, int]:
        return {json.loads(k): v for k, v in latest_rows(kafka_bootstrap, changelog).items()}

    run_example(tmp_path, kafka_bootstrap, "examples.word_count:app",
                ["split_posts", "count_words"],
                lambda: sum(counted().values()) >= sum(expected.values()))
    assert counted() == expected
    assert shard_counts(tmp_path / "tables", "word-counts") == expected


@pytest.mark.kafka
def test_windowed_page_views_example_counts_every_view_exactly_with_two_instances(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    changelog = "page-views-page_views-changelog"
    create_topics(kafka_bootstrap, {"page_views": 4})
    before = latest_rows(kafka_bootstrap, changelog)
    rng = random.Random(18)
    views = [(f"page-{rng.randint(0, 19)}", f"user-{rng.randint(0, 99)}") for _ in range(600)]
    kafkatools.produce(kafka_bootstrap, "page_views", [
        (None, json.dumps({"id": page, "user": user,
                           "__faust": {"ns": "examples.page_views.PageView"}}))
        for page, user in views])
    added = Counter(page for page, _ in views)

    def per_page() -> Counter[str]:
        """This run's views per page: each window's count less what it held before."""
        now = latest_rows(kafka_bootstrap, changelog)
        pages: Counter[str] = Counter()
        for key, value in now.items():
            page, _window = json.loads(key)
            pages[page] += value - before.get(key, 0)
        return pages

    run_example(tmp_path, kafka_bootstrap, "examples.page_views:app", ["count_page_views"],
                lambda: sum(per_page().values()) >= len(views))
    assert per_page() == added
    rows = latest_rows(kafka_bootstrap, changelog)
    windows = {tuple(json.loads(key)[1]) for key in rows}
    assert all(start % 60 == 0 and 59 < end - start <= 60 for start, end in windows), windows
    assert shard_rows(tmp_path / "tables", "page-views", "page_views") == rows
