"""GlobalTables under agentd: one host copy kept by the table keeper, read by every
instance (RocksDB secondaries), an instance reading its own writes at once.

The host copy's reader and writer are tested on a real RocksDB first; then on real
Kafka: two instances write prices from their own partitions, two instances of another
agent read every price (also those the other partitions wrote) from the one copy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, drain_and_stop, wait_until
from test_daemon_tables import status

from agentlib.tables.hostcopy import HostCopyReader, HostCopyWriter


def test_a_reader_sees_the_writers_rows_after_catching_up_and_its_own_writes_at_once(
        tmp_path: Path) -> None:
    writer = HostCopyWriter(tmp_path / "global")
    writer.apply(0, [(b'"a"', b"1"), (b'"b"', b"2")], offset=1)
    reader = HostCopyReader(tmp_path / "global", tmp_path / "reader", catch_up_every=0.0)
    assert reader.get(b'"a"') == b"1"
    writer.apply(1, [(b'"c"', b"3"), (b'"a"', None)], offset=0)
    assert reader.get(b'"c"') == b"3" and reader.get(b'"a"') is None
    assert writer.applied(0) == 1 and writer.applied(1) == 0 and writer.applied(2) == -1

    # Its own write: read from the overlay until the copy's offset reaches the write's.
    entry = reader.wrote(b'"d"', b"4")
    assert reader.get(b'"d"') == b"4"
    entry[1], entry[2] = 1, 5           # delivered to changelog partition 1, offset 5
    assert reader.get(b'"d"') == b"4"   # the copy is at offset 0 there
    writer.apply(1, [(b'"d"', b"40")], offset=5)
    assert reader.get(b'"d"') == b"40"  # the copy has it (and whatever came later)
    assert dict(reader.items()) == {b'"b"': b"2", b'"c"': b"3", b'"d"': b"40"}
    reader.close()
    writer.close()


def test_a_reader_waits_for_the_copy_and_then_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no host copy"):
        HostCopyReader(tmp_path / "nothing", tmp_path / "reader", wait=0.2)


GLOBAL_APP = '''
import os
import agentlib as faust

app = faust.App(os.environ["APP_ID"])
prices_in = app.topic(os.environ["PRICES"], key_type=str, value_type=int)
orders = app.topic(os.environ["ORDERS"], key_type=str, value_type=str)
quotes = app.topic(os.environ["QUOTES"], key_type=str, value_type=int)
prices = app.GlobalTable("prices", default=int)


@app.agent(prices_in)
async def learn(stream):
    async for item, price in stream.items():
        prices[item] = price
        if prices[item] != price:  # an instance reads its own write at once
            raise RuntimeError(f"wrote {price} for {item}, read {prices[item]}")


@app.agent(orders, sink=[quotes])
async def quote(stream):
    async for order, item in stream.items():
        yield prices.get(item, -1)
'''


@pytest.mark.kafka
def test_every_instance_reads_the_whole_global_table_from_one_host_copy(
        kafka_bootstrap, new_topic, tmp_path):
    prices_topic, orders_topic, quotes_topic = new_topic(4), new_topic(4), new_topic(1)
    app_id = kafkatools.unique_name("global")
    table_dir = tmp_path / "tables"
    price_of = {f"item{i}": 100 + i for i in range(200)}
    kafkatools.produce(kafka_bootstrap, prices_topic,
                       [(k.encode(), str(v).encode()) for k, v in price_of.items()])
    settings = {"app": "pricing:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": app_id, "commit_interval": 0.2, "table_dir": str(table_dir)}
    env = {"APP_ID": app_id, "PRICES": prices_topic, "ORDERS": orders_topic,
           "QUOTES": quotes_topic}
    agents = {"learn": {"instances": 2}, "quote": {"instances": 2, "ordering": "none"}}
    with Agentd(tmp_path, settings, agents=agents, modules={"pricing": GLOBAL_APP},
                env=env) as daemon:
        daemon.wait_consuming()
        wait_until(lambda: daemon.assert_running() or kafkatools.committed_equals_end(
            kafka_bootstrap, app_id, prices_topic), 60, "the prices to be learned")

        def copy_current() -> bool:
            rows = [r for r in json.loads(status(daemon, "--json"))["tables"]
                    if r["table"] == "prices"]
            return len(rows) == 4 and all(r["state"] == "global" and r["instance"] is None
                                          and r["changelog_lag"] == 0 for r in rows)
        wait_until(copy_current, 30, "the host copy to hold the whole changelog")

        orders = [(f"o{i}".encode(), json.dumps(f"item{i % 200}").encode())
                  for i in range(1000)]
        kafkatools.produce(kafka_bootstrap, orders_topic, orders)
        drain_and_stop(daemon, kafka_bootstrap, app_id, orders_topic)
        log = daemon.log()
    assert "table keeper ready" in log and "RuntimeError" not in log
    quoted = [json.loads(r.value) for r in kafkatools.read_to_end(kafka_bootstrap,
                                                                   quotes_topic)]
    assert sorted(quoted) == sorted(price_of[json.loads(item)] for _, item in orders)
    table_root = table_dir / app_id / "prices"
    assert sorted(p.name for p in table_root.iterdir()) == ["global", "readers"]
    assert list((table_root / "readers").iterdir()) == []  # each instance cleaned up


@pytest.mark.kafka
def test_a_restart_reuses_the_host_copy(kafka_bootstrap, new_topic, tmp_path):
    """The keeper resumes from the offsets the copy recorded: nothing replayed twice,
    and the rows are there before the first record is processed."""
    prices_topic, orders_topic, quotes_topic = new_topic(2), new_topic(2), new_topic(1)
    app_id = kafkatools.unique_name("global-restart")
    kafkatools.produce(kafka_bootstrap, prices_topic, [(b"tea", b"3"), (b"cake", b"5")])
    settings = {"app": "pricing:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": app_id, "commit_interval": 0.2,
                "table_dir": str(tmp_path / "tables")}
    env = {"APP_ID": app_id, "PRICES": prices_topic, "ORDERS": orders_topic,
           "QUOTES": quotes_topic}
    with Agentd(tmp_path, settings, modules={"pricing": GLOBAL_APP}, env=env) as daemon:
        daemon.wait_consuming()
        wait_until(lambda: daemon.assert_running() or kafkatools.committed_equals_end(
            kafka_bootstrap, app_id, prices_topic), 60, "the prices to be learned")
        time.sleep(1.0)  # the keeper applies the changelog (tailing, < 0.2 s a batch)
        assert daemon.stop() == 0
    kafkatools.produce(kafka_bootstrap, orders_topic, [(b"o1", b'"cake"'), (b"o2", b'"tea"')])
    with Agentd(tmp_path, settings, modules={"pricing": GLOBAL_APP}, env=env) as daemon:
        drain_and_stop(daemon, kafka_bootstrap, app_id, orders_topic)
        log = daemon.log()
    runs = log.split("table keeper ready")
    assert len(runs) == 3 and "GlobalTables: recovered" not in runs[1]
    quoted = [json.loads(r.value) for r in kafkatools.read_to_end(kafka_bootstrap,
                                                                   quotes_topic)]
    assert sorted(quoted) == [3, 5]
