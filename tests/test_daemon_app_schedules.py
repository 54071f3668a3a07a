"""Schedules and services under agentd: ``@app.crontab`` with a seconds field fires in
the instance that runs the app's timers; ``@app.service`` runs ``on_start``, its
``@Service.task`` and ``@Service.timer`` there and ``on_stop`` at exit; ``app.send``
(topic named by a string) reaches Kafka."""

from __future__ import annotations

import json

import kafkatools
from agentdproc import Agentd, wait_committed, wait_until
from agentsrc import agent_module

CRON_AGENT = agent_module("cron-app", "relay", module='''
@app.crontab("* * * * * *")
async def every_second():
    await app.send(os.environ["SINK_TOPIC"], value={"fired": time.time()})
''', imports=["time"])


def test_crontab_fires_every_second_and_app_send_reaches_kafka(kafka_bootstrap, new_topic,
                                                                 tmp_path):
    source, sink = new_topic(1), new_topic(1)
    group = kafkatools.unique_name("cron")
    settings = {"app": "cron_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.5, "log_level": "INFO"}
    with Agentd(tmp_path, settings, agents={"relay": {"instances": 2}},
                modules={"cron_agent": CRON_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        records: list[kafkatools.Record] = []

        def fired_thrice() -> bool:
            daemon.assert_running()
            records[:] = kafkatools.read_to_end(kafka_bootstrap, sink, timeout=10)
            return len(records) >= 3
        wait_until(fired_thrice, 60, "the crontab to send three times", interval=1.0)
        assert daemon.stop() == 0
    stamps = sorted(json.loads(r.value or b"")["fired"] for r in records)
    # once a second, in one instance only: no two sends in the same second
    assert len({int(s) for s in stamps}) == len(stamps)


SERVICE_AGENT = agent_module("service-app", "relay", module='''
marks = os.environ["MARKS_DIR"]


@app.service
class Ticker(faust.Service):
    async def on_start(self):
        open(os.path.join(marks, "started"), "w").close()

    async def on_stop(self):
        open(os.path.join(marks, "stopped"), "w").close()

    @faust.Service.task
    async def _once(self):
        await app.send(os.environ["SINK_TOPIC"], value="task")

    @faust.Service.timer(0.2)
    async def _tick(self):
        await app.send(os.environ["SINK_TOPIC"], value="timer")
''')


def test_service_starts_runs_its_task_and_timer_and_stops(kafka_bootstrap, new_topic,
                                                          tmp_path):
    source, sink = new_topic(1), new_topic(1)
    marks = tmp_path / "marks"
    marks.mkdir()
    settings = {"app": "service_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": kafkatools.unique_name("service"), "log_level": "INFO"}
    with Agentd(tmp_path, settings, agents={"relay": {"instances": 2}},
                modules={"service_agent": SERVICE_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink,
                     "MARKS_DIR": str(marks)}) as daemon:
        daemon.wait_consuming()
        values: list[str] = []

        def ran() -> bool:
            daemon.assert_running()
            values[:] = [json.loads(r.value or b"") for r in
                         kafkatools.read_to_end(kafka_bootstrap, sink, timeout=10)]
            return "task" in values and values.count("timer") >= 2
        wait_until(ran, 60, "the service's task and timer to send", interval=1.0)
        assert (marks / "started").exists() and not (marks / "stopped").exists()
        assert daemon.stop() == 0
    assert (marks / "stopped").exists()
    assert values.count("task") == 1  # one instance runs the service, once


INDEX_AGENT = agent_module("index-app", "indexed",
                           body="yield str(stream.concurrency_index).encode()")


def test_each_instance_sees_its_own_concurrency_index(kafka_bootstrap, new_topic,
                                                      tmp_path):
    source, sink = new_topic(8), new_topic(1)
    kafkatools.produce(kafka_bootstrap, source,
                       [(f"k{i}".encode(), b"x") for i in range(64)])
    group = kafkatools.unique_name("index")
    settings = {"app": "index_agent:app", "broker": f"kafka://{kafka_bootstrap}",
                "group_id": group, "commit_interval": 0.5}
    with Agentd(tmp_path, settings, agents={"indexed": {"instances": 2}},
                modules={"index_agent": INDEX_AGENT},
                env={"IN_TOPIC": source, "SINK_TOPIC": sink}) as daemon:
        daemon.wait_consuming()
        wait_committed(daemon, kafka_bootstrap, group, source, 60,
                       "the source to be committed")
        assert daemon.stop() == 0
    values = [r.value for r in kafkatools.read_to_end(kafka_bootstrap, sink)]
    assert len(values) == 64
    assert set(values) == {b"0", b"1"}
