"""``on_leader=True`` timers run on exactly one daemon of a group, and move to a
survivor when the leader dies (issue 20, item 4). Two daemons on one real Kafka."""

from __future__ import annotations

import collections
import json
import signal
import time
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, wait_until
from test_daemon_tables import status

LEADER_APP = """
import os
import agentlib as faust

app = faust.App(os.environ["APP_ID"])
source = app.topic(os.environ["IN_TOPIC"], value_type=bytes, value_serializer="raw")
ticks = app.topic(os.environ["TICKS"], value_type=bytes, value_serializer="raw")


@app.agent(source)
async def idle(stream):
    async for _ in stream:
        pass


@app.timer(0.2, on_leader=True)
async def tick():
    await ticks.send(value=os.environ["WHO"].encode())
"""

SESSION_S = 6


def member(workdir: Path, bootstrap: str, who: str, app_id: str, source: str,
           ticks: str) -> Agentd:
    workdir.mkdir()
    settings = {"app": "leading:app", "broker": f"kafka://{bootstrap}", "group_id": app_id}
    # No [kafka]: the election's session timeout is agentd's default (SESSION_S), not
    # librdkafka's 45 s.
    return Agentd(workdir, settings, modules={"leading": LEADER_APP},
                  env={"IN_TOPIC": source, "TICKS": ticks, "APP_ID": app_id, "WHO": who})


def tick_counts(bootstrap: str, topic: str) -> collections.Counter[str]:
    return collections.Counter(r.value.decode() for r in kafkatools.read_to_end(bootstrap,
                                                                                 topic))


def last_leadership(log: str, app_id: str) -> str | None:
    """The daemon's last leadership line: "leader of" (leads), "no longer the", or None."""
    lines = [line for line in log.splitlines() if f"leader of group {app_id}-__leader" in line]
    if not lines:
        return None
    return "no longer the" if "no longer the leader" in lines[-1] else "leader of"


@pytest.mark.kafka
@pytest.mark.parametrize("end", ["kill -9", "SIGTERM"])
def test_on_leader_timer_fires_on_one_daemon_and_moves_when_it_ends(
        kafka_bootstrap, new_topic, tmp_path, end):
    """kill -9: the survivor leads once the broker expires the dead member (the
    session timeout); SIGTERM: the leaving daemon leaves the election group at once."""
    source, ticks = new_topic(2), new_topic(1)
    app_id = kafkatools.unique_name("leader")
    with member(tmp_path / "a", kafka_bootstrap, "a", app_id, source, ticks) as a, \
            member(tmp_path / "b", kafka_bootstrap, "b", app_id, source, ticks) as b:
        daemons = {"a": a, "b": b}
        a.wait_consuming()
        b.wait_consuming()
        wait_until(lambda: a.assert_running() or b.assert_running() or
                   sum(tick_counts(kafka_bootstrap, ticks).values()) >= 5, 60,
                   "the leader's timer to fire")
        # Settled: over the next seconds only one daemon's timer fires.
        time.sleep(SESSION_S / 2)
        before = tick_counts(kafka_bootstrap, ticks)
        time.sleep(3)
        during = tick_counts(kafka_bootstrap, ticks) - before
        assert len(during) == 1 and sum(during.values()) >= 5, during
        leader = next(iter(during))
        survivor = "b" if leader == "a" else "a"
        assert f"leader of group {app_id}-__leader" in daemons[leader].log()
        # The first daemon up may lead until the second joins; then it must step down.
        assert last_leadership(daemons[survivor].log(), app_id) in (None, "no longer the")
        assert json.loads(status(daemons[leader], "--json"))["leader"] is True
        assert json.loads(status(daemons[survivor], "--json"))["leader"] is False
        assert f"group {app_id} (leader)," in status(daemons[leader])
        killed = time.monotonic()
        if end == "kill -9":
            daemons[leader].kill()
        else:
            assert daemons[leader].stop() == 0
        at_kill = tick_counts(kafka_bootstrap, ticks)[survivor]
        wait_until(lambda: daemons[survivor].assert_running() or
                   tick_counts(kafka_bootstrap, ticks)[survivor] > at_kill, 60,
                   "the survivor to lead and fire")
        took = time.monotonic() - killed
        # kill -9: expiry (6 s) plus the rebalance; SIGTERM: no expiry to wait for
        bound = SESSION_S * 2.5 if end == "kill -9" else SESSION_S
        assert took < bound, f"the survivor led {took:.1f} s after {end}"
        print(f"on_leader timer moved to the survivor {took:.1f} s after {end} "
              f"(session timeout {SESSION_S} s)")
        assert daemons[survivor].stop() == 0


@pytest.mark.kafka
def test_a_reload_joins_the_election_for_new_on_leader_work_and_leaves_it_after(
        kafka_bootstrap, new_topic, tmp_path):
    """Started without ``on_leader`` work, the daemon is in no election; a reload that
    adds an ``on_leader`` timer must join one (before: the timer never fired, nobody
    told the new instance it leads), and a reload that removes it leaves it."""
    source, ticks = new_topic(2), new_topic(1)
    app_id = kafkatools.unique_name("leader-reload")
    without_timer = LEADER_APP[:LEADER_APP.index("@app.timer")]
    daemon = member(tmp_path / "a", kafka_bootstrap, "a", app_id, source, ticks)
    module = daemon.workdir / "leading.py"
    module.write_text(without_timer)
    with daemon:
        daemon.wait_consuming()
        assert f"leader of group {app_id}-__leader" not in daemon.log()
        module.write_text(LEADER_APP)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.assert_running() or
                   sum(tick_counts(kafka_bootstrap, ticks).values()) >= 3, 60,
                   "the on_leader timer the reload added to fire")
        assert f"leader of group {app_id}-__leader" in daemon.log()
        module.write_text(without_timer)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.assert_running() or daemon.log().count("reload done in") >= 2,
                   60, "the second reload")
        assert "leaving the leader election" in daemon.log()
        assert not json.loads(status(daemon, "--json"))["leader"]  # None: no election
        assert daemon.stop() == 0
