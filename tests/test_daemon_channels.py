"""``app.channel()`` between agents under agentd: a message sent in one instance
reaches an instance of the reading agent through the supervisor (issue 20, item 3).

Faust's channels are in-memory queues of Python objects: the values here carry what
plain pickle cannot (a lambda, an instance of a class defined in a function)."""

from __future__ import annotations

import pickle

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed, wait_until
from test_check_cmd import assert_one_line_error, run_check

from agentlib import codecs

CHANNEL_APP = """
import os
import agentlib as faust

app = faust.App("channel-app")
source = app.topic(os.environ.get("IN_TOPIC", "in"), value_type=bytes, value_serializer="raw")
sink = app.topic(os.environ.get("SINK", "out"), value_type=bytes, value_serializer="raw")
work = app.channel()


@app.agent(source)
async def split(stream):
    class Offset:                  # a local class: plain pickle cannot carry it
        def __init__(self, n):
            self.n = n
    async for value in stream:
        n = int(value)
        await work.send(key=str(n % 7), value={"n": Offset(n), "f": lambda x: x * 10})


@app.agent(work, sink=[sink])
async def scale(stream):
    async for item in stream:
        yield str(item["f"](item["n"].n)).encode()
"""


def test_channel_values_need_cloudpickle():
    """The values the daemon test sends: plain pickle refuses them, the channel's codec
    carries them (so the test below shows cloudpickle at work, not pickle)."""
    def local():
        class Local:
            pass
        return Local()
    value = {"f": lambda x: x * 10, "n": local()}
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(value)
    back = codecs.loads("cloudpickle", codecs.dumps("cloudpickle", value))
    assert back["f"](2) == 20 and type(back["n"]).__name__ == "Local"


@pytest.mark.kafka
def test_channel_between_agents_carries_every_value_across_instances(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(4), new_topic(1)
    items = [(f"k{i}".encode(), str(i).encode()) for i in range(500)]
    kafkatools.produce(kafka_bootstrap, source, items)
    group = kafkatools.unique_name("channel")
    settings = {"app": "channel_app:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    with Agentd(tmp_path, settings, agents={"split": {"instances": 2},
                                            "scale": {"instances": 2}},
                modules={"channel_app": CHANNEL_APP},
                env={"IN_TOPIC": source, "SINK": sink}) as daemon:
        daemon.wait_consuming()
        wait_until(lambda: daemon.assert_running() or
                   len(kafkatools.read_to_end(kafka_bootstrap, sink)) >= len(items),
                   60, "every channel message to reach the sink")
        wait_committed(daemon, kafka_bootstrap, group, source, 60, "the source committed")
        assert daemon.stop() == 0
        assert "nothing in this process reads" not in daemon.log()
    got = sorted(int(r.value) for r in kafkatools.read_to_end(kafka_bootstrap, sink))
    assert got == sorted(int(value) * 10 for _, value in items)


@pytest.mark.kafka
def test_a_channel_reader_at_its_max_in_flight_goes_on_reading(
        kafka_bootstrap, new_topic, tmp_path):
    """A channel's records count against ``max_in_flight`` and are never acked: the
    reader stopped reading its ring at that bound and never started again (a hang)."""
    source, sink = new_topic(2), new_topic(1)
    items = [(f"k{i}".encode(), str(i).encode()) for i in range(60)]
    kafkatools.produce(kafka_bootstrap, source, items)
    settings = {"app": "channel_app:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("channel-bound"), "commit_interval": 0.2}
    with Agentd(tmp_path, settings, agents={"scale": {"max_in_flight": 2}},
                modules={"channel_app": CHANNEL_APP},
                env={"IN_TOPIC": source, "SINK": sink}) as daemon:
        daemon.wait_consuming()
        wait_until(lambda: daemon.assert_running() or
                   len(kafkatools.read_to_end(kafka_bootstrap, sink)) >= len(items),
                   30, "every channel message past a max_in_flight of 2")
        assert daemon.stop() == 0


CHANNEL_WITH_TABLE = """
import agentlib as faust

app = faust.App("channel-table")
numbers = app.channel()
counts = app.Table("counts", default=int)


@app.agent(numbers)
async def count(stream):
    async for value in stream:
        counts[value] += 1
"""


def test_check_refuses_a_channel_agent_with_a_table_in_one_line_naming_the_channel(
        tmp_path):
    """What cannot work: a table's shards follow a topic's partitions; a channel's
    events have none. One line at check naming the channel, exit 2."""
    done = run_check(tmp_path, 'app = "channel_table:app"\nbroker = "kafka://127.0.0.1:9"\n',
                     {"channel_table": CHANNEL_WITH_TABLE})
    assert_one_line_error(done, "app")
    assert "reads channel channel-0 and uses table 'counts'" in done.stderr


def test_check_accepts_agents_talking_over_a_channel(tmp_path):
    done = run_check(tmp_path, 'app = "channel_app:app"\nbroker = "kafka://127.0.0.1:9"\n',
                     {"channel_app": CHANNEL_APP})
    assert done.returncode == 0, done.stderr
