"""A drained backlog is committed at once, not at the next ``commit_interval`` tick.

With ``commit_interval`` far longer than the test, the committed offsets can only
reach the end because the supervisor commits a partition as soon as everything it
dispatched from it is acked and a fetch comes back empty, at most a second after its
last look (a tenth of the interval, 60 s here, made each burst wait about a minute).
"""

from __future__ import annotations

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed

DRAIN_AGENT = """
import os
import agentlib as faust

app = faust.App("prompt-commit-app")
source = app.topic(os.environ["IN_TOPIC"], value_type=bytes, value_serializer="raw")


@app.agent(source)
async def drain(stream):
    async for value in stream:
        pass
"""


@pytest.mark.kafka
def test_a_drained_backlog_is_committed_long_before_the_commit_interval(
        kafka_bootstrap, new_topic, tmp_path):
    source = new_topic(4)
    group = kafkatools.unique_name("prompt-commit")
    settings = {"app": "drain_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": "600s", "log_level": "INFO"}
    with Agentd(tmp_path, settings, modules={"drain_agent": DRAIN_AGENT},
                env={"IN_TOPIC": source}) as daemon:
        daemon.wait_consuming()
        kafkatools.produce(kafka_bootstrap, source, [(None, b"x%d" % i) for i in range(5000)])
        wait_committed(daemon, kafka_bootstrap, group, source, 20,
                       "the drained backlog to be committed before the 600 s interval")
        kafkatools.produce(kafka_bootstrap, source, [(None, b"y%d" % i) for i in range(100)])
        wait_committed(daemon, kafka_bootstrap, group, source, 20,
                       "a second burst to be committed as promptly")
        assert daemon.stop() == 0
