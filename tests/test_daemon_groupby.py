"""group_by under agentd: the repartition topic is created and consumed by the
supervisor, every account's events meet one instance, and both topics commit to the end."""

from __future__ import annotations

import json
from collections import defaultdict

import kafkatools
import pytest
from agentdproc import Agentd, wait_until

GROUPED_AGENT = """
import os
import agentlib as faust

app = faust.App(os.environ["APP_ID"])


class Transfer(faust.Record):
    account: str
    n: int


source = app.topic(os.environ["IN_TOPIC"], value_type=Transfer)
sink = app.topic(os.environ["SINK_TOPIC"], value_type=bytes, value_serializer="raw")


@app.agent(source, sink=[sink])
async def by_account(stream):
    async for transfer in stream.group_by(Transfer.account, name="accounts"):
        yield f"{transfer.account}:{transfer.n}:{os.getpid()}".encode()
"""


@pytest.mark.kafka
def test_group_by_sends_each_account_to_one_instance_and_commits_both_topics(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(4), new_topic(1)
    app_id = kafkatools.unique_name("grouped")
    items = [(None, json.dumps({"account": f"acct{i % 20}", "n": i}).encode())
             for i in range(2_000)]
    kafkatools.produce(kafka_bootstrap, source, items)
    group = kafkatools.unique_name("grouped")
    settings = {"app": "grouped_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    repartition = f"grouped_agent.by_account-{source}-accounts-repartition"  # Faust's name
    with Agentd(tmp_path, settings, agents={"by_account": {"instances": 2}},
                modules={"grouped_agent": GROUPED_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink, "APP_ID": app_id}) as daemon:
        daemon.wait_consuming()
        wait_until(lambda: daemon.assert_running() or (
            kafkatools.committed_equals_end(kafka_bootstrap, group, source)
            and kafkatools.committed_equals_end(kafka_bootstrap, group, repartition)
            and len(kafkatools.read_to_end(kafka_bootstrap, sink)) >= len(items)),
            90, "both topics to be committed to the end")
        assert daemon.stop() == 0
    pids_by_account: dict[str, set[str]] = defaultdict(set)
    seen = []
    for record in kafkatools.read_to_end(kafka_bootstrap, sink):
        assert record.value is not None
        account, n, pid = record.value.decode().split(":")
        pids_by_account[account].add(pid)
        seen.append(int(n))
    assert sorted(seen) == list(range(len(items)))
    assert all(len(pids) == 1 for pids in pids_by_account.values()), pids_by_account
    assert len({pid for pids in pids_by_account.values() for pid in pids}) == 2


TWO_GROUPINGS = """
import os
import agentlib as faust

app = faust.App(os.environ["APP_ID"])


class Seen(faust.Record):
    account: str
    n: int


payments = app.topic(os.environ["PAYMENTS"], value_type=Seen)
logins = app.topic(os.environ["LOGINS"], value_type=Seen)
paid = app.topic(os.environ["PAID"], value_type=bytes, value_serializer="raw")
logged = app.topic(os.environ["LOGGED"], value_type=bytes, value_serializer="raw")


@app.agent(payments, sink=[paid])
async def pay(stream):
    async for seen in stream.group_by(Seen.account, name="account"):
        yield f"{seen.account}:{seen.n}".encode()


@app.agent(logins, sink=[logged])
async def login(stream):
    async for seen in stream.group_by(Seen.account, name="account"):
        yield f"{seen.account}:{seen.n}".encode()
"""


@pytest.mark.kafka
def test_two_agents_grouping_by_the_same_field_each_read_only_their_own_records(
        kafka_bootstrap, new_topic, tmp_path):
    payments, logins, paid, logged = new_topic(2), new_topic(2), new_topic(1), new_topic(1)
    kafkatools.produce(kafka_bootstrap, payments, [
        (None, json.dumps({"account": f"a{i % 5}", "n": i}).encode()) for i in range(100)])
    kafkatools.produce(kafka_bootstrap, logins, [
        (None, json.dumps({"account": f"a{i % 5}", "n": 1000 + i}).encode())
        for i in range(50)])
    group = kafkatools.unique_name("two-groupings")
    settings = {"app": "two_groupings:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.2}
    env = {"PAYMENTS": payments, "LOGINS": logins, "PAID": paid, "LOGGED": logged,
           "APP_ID": kafkatools.unique_name("two-groupings")}
    with Agentd(tmp_path, settings, modules={"two_groupings": TWO_GROUPINGS},
                env=env) as daemon:
        daemon.wait_consuming()
        wait_until(lambda: daemon.assert_running() or (
            kafkatools.committed_equals_end(kafka_bootstrap, group, payments)
            and kafkatools.committed_equals_end(kafka_bootstrap, group, logins)
            and len(kafkatools.read_to_end(kafka_bootstrap, paid)) >= 100
            and len(kafkatools.read_to_end(kafka_bootstrap, logged)) >= 50),
            90, "both agents to process their records")
        assert daemon.stop() == 0
    numbers = {sink: sorted(int(r.value.split(b":")[1])
                            for r in kafkatools.read_to_end(kafka_bootstrap, sink))
               for sink in (paid, logged)}
    assert numbers[paid] == list(range(100))
    assert numbers[logged] == list(range(1000, 1050))
