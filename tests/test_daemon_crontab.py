"""``@app.crontab`` under agentd: a schedule with a seconds field fires in the instance
that runs the app's timers, and ``app.send`` (topic named by a string) reaches Kafka."""

from __future__ import annotations

import json

import kafkatools
from agentdproc import Agentd, wait_until
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
