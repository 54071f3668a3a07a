"""Units of issue 20's channels and leader: the ``CHANNEL`` record, how the fleet
routes it, and an instance starting/cancelling its ``on_leader`` timers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from agentlib.app import Timer
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import AgentRuntime, Instance
from supervisor.instance.apptasks import Background
from supervisor.transport import wire


def test_a_channel_record_keeps_name_key_value_and_headers():
    record = wire.encode_channel("channel-3", b"k", b"\x80value", [("h", b"1")])
    assert record[0] == wire.CHANNEL
    assert wire.channel_name(record) == "channel-3"
    name, message = wire.decode_channel(memoryview(record))
    assert (name, message.key, message.value, message.headers) == (
        "channel-3", b"k", b"\x80value", (("h", b"1"),))
    _, empty = wire.decode_channel(wire.encode_channel("c", None, None, None))
    assert (empty.key, empty.value) == (None, None)


def make_fleet() -> Fleet:
    fleet = Fleet(SimpleNamespace(), "127.0.0.1:9")  # type: ignore[arg-type]
    config = SimpleNamespace(ring_size=64 * 1024, poison_after=3)
    for lane, (name, channels) in enumerate([("reader", ("channel-0",)),
                                             ("other", ("channel-1",)),
                                             ("second", ("channel-0",))]):
        agent = AgentRuntime(name, lane, (), config, "app", channels=channels)
        agent.instances = [Instance(agent, i) for i in range(3)]
        fleet.add(agent)
    return fleet


def queued(fleet: Fleet, agent: str) -> list[int]:
    return [len(inst.controls) for a in fleet.agents if a.name == agent
            for inst in a.instances]


def test_keyless_channel_messages_go_round_robin_to_each_reading_agent():
    fleet = make_fleet()
    for _ in range(6):
        assert fleet.route_channel(wire.encode_channel("channel-0", None, b"v", None)) == 2
    assert queued(fleet, "reader") == [2, 2, 2]
    assert queued(fleet, "second") == [2, 2, 2]
    assert queued(fleet, "other") == [0, 0, 0]


def test_keyed_channel_messages_go_to_one_instance_per_key():
    fleet = make_fleet()
    for _ in range(5):
        fleet.route_channel(wire.encode_channel("channel-1", b"same", b"v", None))
    assert sorted(queued(fleet, "other")) == [0, 0, 5]


def test_a_channel_nobody_here_reads_is_dropped():
    assert make_fleet().route_channel(wire.encode_channel("channel-9", None, b"v", None)) == 0


def test_on_leader_timers_start_when_leading_and_stop_when_not():
    fired: list[str] = []

    async def plain() -> None:
        fired.append("plain")

    async def leader() -> None:
        fired.append("leader")

    app = SimpleNamespace(tasks=[], leader_tasks=[],
                          timers=[Timer(3600, plain), Timer(3600, leader, on_leader=True)])

    async def scenario() -> list[set[str]]:
        background = Background()
        background.start_app_tasks(app, leading=False)
        seen = [{t.get_name() for t in background.tasks}]
        background.lead(app, True)
        background.lead(app, True)  # told twice: still one
        seen.append({t.get_name() for t in background.leading})
        assert len(background.tasks) == 2
        running = list(background.leading)
        background.lead(app, False)
        await asyncio.gather(*running, return_exceptions=True)
        assert all(task.cancelled() for task in running)
        seen.append({t.get_name() for t in background.tasks})
        background.cancel_all()
        return seen

    assert asyncio.run(scenario()) == [{"plain"}, {"leader"}, {"plain"}]


def test_on_leader_crontabs_wait_for_the_lead_and_elect():
    """A crontab with on_leader=True runs only while this daemon leads, and makes the
    daemon join the election (as an on_leader timer does)."""
    from agentlib.cron import Crontab
    from supervisor.instance.zygote import _has_leader_work

    async def everywhere() -> None:
        pass

    async def leader_only() -> None:
        pass

    crontabs = [Crontab("0 * * * *", everywhere, None, False),
                Crontab("0 * * * *", leader_only, None, True)]
    app = SimpleNamespace(tasks=[], leader_tasks=[], timers=[], services=[],
                          crontabs=crontabs)

    async def scenario() -> list[set[str]]:
        background = Background()
        background.start_app_tasks(app, leading=False)
        seen = [{t.get_name() for t in background.tasks}]
        background.lead(app, True)
        seen.append({t.get_name() for t in background.leading})
        background.lead(app, False)
        await asyncio.sleep(0)
        seen.append({t.get_name() for t in background.tasks if not t.cancelled()})
        background.cancel_all()
        return seen

    assert asyncio.run(scenario()) == [{"everywhere"}, {"leader_only"}, {"everywhere"}]
    assert _has_leader_work(app)
    assert not _has_leader_work(SimpleNamespace(leader_tasks=[], timers=[],
                                                crontabs=crontabs[:1]))
