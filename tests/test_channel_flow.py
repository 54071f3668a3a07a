"""Channel flow control: a slow or stopped reader makes the channel's senders wait
instead of growing the supervisor's memory (``supervisor/daemon/channelflow.py``).

Units here (a real ring, the fleet's routing, the instance's port); the daemon test
with real Kafka is ``test_daemon_channel_flow.py``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from types import SimpleNamespace

from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import CHANNEL_BOUND, AgentRuntime, Instance
from supervisor.instance.channels import FLAG_POLL_S, ChannelPort
from supervisor.transport import wire
from supervisor.transport.flags import FLAGS_FD_ENV, SharedFlags
from supervisor.transport.ring import Ring


def fleet_of(bound: int) -> tuple[Fleet, Instance]:
    """A reader agent (one instance, bound ``bound``) of channel-0, and a sender agent;
    the reader with a real inbound ring."""
    fleet = Fleet(SimpleNamespace(), "127.0.0.1:9")  # type: ignore[arg-type]
    config = SimpleNamespace(ring_size=64 * 1024, poison_after=3)
    reader_agent = AgentRuntime("reader", 0, (), config, "app", channels=("channel-0",),
                                channel_bound=bound)
    sender_agent = AgentRuntime("sender", 1, ("in",), config, "app")
    reader, sender = Instance(reader_agent, 0), Instance(sender_agent, 0)
    reader_agent.instances, sender_agent.instances = [reader], [sender]
    fleet.add(reader_agent)
    fleet.add(sender_agent)
    reader.inbound = Ring.create(64 * 1024)  # the config's ring_size
    fleet.flow.shared_fd()  # what starting the zygote does
    return fleet, reader


def flag_of(fleet: Fleet, name: str = "channel-0") -> bool:
    """The channel's flag as the instances see it: a second, read-only mapping."""
    assert fleet.flow.flags is not None
    seen = SharedFlags.attach(os.dup(fleet.flow.flags.fd))
    try:
        return seen[fleet.flow.index[name]]
    finally:
        seen.close()


def drain(ring: Ring) -> int:
    """Read everything in ``ring`` (the reader process catching up); how many."""
    views = ring.read_many(1 << 20)
    count = len(views)
    del views
    ring.release()
    return count


def test_the_default_bound_is_fausts_stream_buffer_maxsize():
    assert AgentRuntime("a", 0, (), None, "app").channel_bound == CHANNEL_BOUND == 4096


def test_a_channel_is_full_once_its_reader_is_bound_behind_and_its_flag_is_set():
    fleet, reader = fleet_of(bound=10)
    message = wire.encode_channel("channel-0", None, b"x" * 200, None)
    while not reader.controls:  # fill the ring first: nothing waits while it has room
        fleet.route_channel(message)
    for _ in range(8):
        fleet.route_channel(message)
    assert not flag_of(fleet)
    fleet.route_channel(message)
    assert reader.channel_queued == 10 and fleet.flow.full == {"channel-0"}
    assert fleet.flow.active and flag_of(fleet)
    fleet.flow.tick(fleet.agents)
    assert fleet.flow.full == {"channel-0"} and flag_of(fleet)  # still behind


def test_it_opens_again_below_half_the_bound():
    fleet, reader = fleet_of(bound=10)
    message = wire.encode_channel("channel-0", None, b"x" * 200, None)
    while reader.channel_queued < 10:
        fleet.route_channel(message)
    assert flag_of(fleet)
    assert reader.inbound is not None
    drain(reader.inbound)  # the reader caught up: the waiting 10 fit in its ring
    reader.pump()
    assert reader.channel_queued == 0 and reader.channel_queued_bytes == 0
    fleet.flow.tick(fleet.agents)
    assert fleet.flow.full == set() and not fleet.flow.active and not flag_of(fleet)


def test_a_reader_that_is_down_fills_the_channel_and_its_death_empties_it():
    fleet, reader = fleet_of(bound=3)
    reader.inbound = None  # its process is restarting: everything waits
    for _ in range(3):
        fleet.route_channel(wire.encode_channel("channel-0", None, b"v", None))
    assert fleet.flow.full == {"channel-0"} and flag_of(fleet)
    reader.died()  # what it was sent is dropped with it (a channel is memory)
    fleet.flow.tick(fleet.agents)
    assert fleet.flow.full == set() and not flag_of(fleet)


def test_a_big_message_counts_by_its_bytes_too():
    fleet, reader = fleet_of(bound=1000)
    big = wire.encode_channel("channel-0", None, b"x" * 30_000, None)
    for _ in range(6):  # two fill the 64 KiB ring; the byte mark is a ring's worth more
        fleet.route_channel(big)
    assert reader.channel_queued < 1000
    assert fleet.flow.full == {"channel-0"} and flag_of(fleet)


def test_a_message_larger_than_the_readers_ring_is_dropped_with_one_error_line(caplog):
    fleet, reader = fleet_of(bound=10)
    huge = wire.encode_channel("channel-0", None, b"x" * (64 * 1024), None)
    assert fleet.route_channel(huge) == 0
    assert not reader.controls and reader.channel_queued == 0
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "channel-0" in errors[0] and "ring_size" in errors[0]
    assert fleet.route_channel(wire.encode_channel("channel-0", None, b"v", None)) == 1


def test_the_flags_reach_a_process_the_zygote_starts(tmp_path):
    """The memfd crosses exec as the zygote's does (``pass_fds``) and reads the same."""
    fleet, reader = fleet_of(bound=1)
    reader.inbound = None
    fleet.route_channel(wire.encode_channel("channel-0", None, b"v", None))
    env = fleet.env_for(SimpleNamespace(kafka={}, log_level="INFO"))  # type: ignore[arg-type]
    fd = int(env[FLAGS_FD_ENV])
    script = ("import os; from supervisor.transport.flags import SharedFlags, FLAGS_FD_ENV;"
              "print(SharedFlags.attach(int(os.environ[FLAGS_FD_ENV]))[0])")
    seen = subprocess.run([sys.executable, "-c", script], env=env, pass_fds=[fd],
                          capture_output=True, text=True, check=True)
    assert seen.stdout.strip() == "True"


def test_the_port_makes_senders_of_a_full_channel_wait_until_it_opens():
    flags = SharedFlags.create()
    seen = SharedFlags.attach(os.dup(flags.fd))

    async def scenario() -> None:
        sent: list[bytes] = []
        app = SimpleNamespace()
        port = ChannelPort(app, None, sent.append, {"channel-0": 0, "channel-1": 1}, seen)
        assert app.channel_outlet == port.send
        assert port.send("channel-0", None, b"a", None) is None
        flags.set(0, True)
        waiting = port.send("channel-0", None, b"b", None)
        assert waiting is not None and not waiting.done()
        assert port.send("channel-0", None, b"b2", None) is waiting  # one wait for all
        assert port.send("channel-1", None, b"c", None) is None  # only that channel
        assert port.send("channel-9", None, b"d", None) is None  # not read here: no flag
        assert len(sent) == 5  # the messages still go: the senders wait after them
        await asyncio.sleep(FLAG_POLL_S * 3)
        assert not waiting.done()
        flags.set(0, False)
        await asyncio.wait_for(waiting, 1)
        assert port.send("channel-0", None, b"e", None) is None

    try:
        asyncio.run(scenario())
    finally:
        seen.close()
        flags.close()


def test_the_bound_is_the_channels_maxsize_else_the_apps_stream_buffer_maxsize():
    import agentlib as faust
    from supervisor.instance.zygote import _channel_maxsize

    app = faust.App("bounds", stream_buffer_maxsize=100)
    sized, unsized = app.channel(maxsize=7), app.channel()
    assert _channel_maxsize(SimpleNamespace(channel=sized, app=app)) == 7
    assert _channel_maxsize(SimpleNamespace(channel=unsized, app=app)) == 100
    plain = faust.App("plain")
    assert _channel_maxsize(SimpleNamespace(channel=plain.channel(), app=plain)) is None


def test_prometheus_shows_the_channels_as_status_does():
    from prometheus_client import CollectorRegistry

    from supervisor.daemon.ops.metrics import _SnapshotCollector

    collector = _SnapshotCollector()
    collector.doc = {"instances": [], "agents": [], "partitions": [], "state": "running",
                     "channels": [{"channel": "channel-0", "full": True, "bound": 5,
                                   "waiting": [5, 1]}]}
    registry = CollectorRegistry()
    registry.register(collector)
    assert registry.get_sample_value("agentd_channel_full", {"channel": "channel-0"}) == 1
    assert registry.get_sample_value("agentd_channel_waiting",
                                     {"channel": "channel-0", "instance": "1"}) == 1
