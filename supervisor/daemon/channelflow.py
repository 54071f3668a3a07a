"""Flow control for the app's channels: a slow reader makes the senders wait.

A ``channel.send()`` in one instance reaches the reading agent's instance through the
supervisor, which queues it while that instance's ring is full (``Instance.controls``).
Nothing else bounded that queue: a reader slower than its senders, or one that is
down, grew the supervisor's memory without limit, and the supervisor serves every
instance of the host. Faust bounds a channel where it is used: its queue holds
``maxsize`` messages (``app.channel(maxsize=)``, else the app's
``stream_buffer_maxsize``, 4096) and ``await channel.send()`` waits while it is full.

Here a channel is *full* once the messages waiting in the supervisor for one of its
reading instances reach that bound (or a ring's worth of bytes). The supervisor then
sets the channel's flag in a page of shared memory every instance maps
(:class:`~supervisor.transport.flags.SharedFlags`), and a ``send()`` on the channel
waits while the flag is set. It clears the flag when every reading instance is below
half of both marks (hysteresis, as the Kafka backlog's pause and resume, so senders do
not flap). Why a shared flag and not a record on the senders' rings: a record is read
only when the instance reads its ring, which it stops doing while it holds
``max_in_flight`` records, so a sender blocked on the channel would never hear that it
opened; and an agent sending a burst does not read its ring between sends.

The bound is firm but not exact: what the senders had written to their outbound rings
before the flag was set is still delivered (at most one outbound ring per sender). A
channel an agent sends to itself while it is full waits for itself, as in Faust.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from supervisor.config.loader import ConfigError
from supervisor.daemon.instances import AgentRuntime, Instance
from supervisor.transport.flags import FLAG_COUNT, SharedFlags

__all__ = ["ChannelFlow"]

log = logging.getLogger("agentd")


class ChannelFlow:
    """Which channels are full, published as shared flags."""

    def __init__(self) -> None:
        #: channel name -> its flag's index (the channels an agent here reads)
        self.index: dict[str, int] = {}
        #: the channels whose senders wait now
        self.full: set[str] = set()
        #: the flags, once a channel is read here (the memfd every instance inherits)
        self.flags: SharedFlags | None = None

    @property
    def active(self) -> bool:
        """Something to look at once per loop turn (a full channel may open)."""
        return bool(self.full)

    def add_channel(self, name: str) -> None:
        """A channel an agent reads: give it a flag."""
        if name in self.index:
            return
        if len(self.index) >= FLAG_COUNT:
            raise ConfigError("app", f"channel {name}: more than {FLAG_COUNT} channels")
        self.index[name] = len(self.index)

    def shared_fd(self) -> int:
        """The flags' memfd, made on first use: the zygote inherits it, and so every
        instance it forks (``AGENTD_FLAGS_FD``)."""
        if self.flags is None:
            self.flags = SharedFlags.create()
        return self.flags.fd

    def queued(self, name: str, reader: Instance) -> None:
        """A message of channel ``name`` waits for ``reader``: full if it is behind."""
        if name in self.full or not reader.channel_behind() or self.flags is None:
            return
        self.full.add(name)
        self.flags.set(self.index[name], True)
        log.debug("channel %s is full: %d messages (%d bytes) wait for %s; its senders "
                  "wait", name, reader.channel_queued, reader.channel_queued_bytes,
                  reader.label)

    def tick(self, agents: Iterable[AgentRuntime]) -> None:
        """Once per loop turn while :attr:`active`: open the channels whose readers all
        caught up."""
        assert self.flags is not None
        readers: dict[str, list[Instance]] = {}
        for agent in agents:
            for name in agent.channels:
                readers.setdefault(name, []).extend(agent.instances)
        for name in list(self.full):
            if all(inst.channel_caught_up() for inst in readers.get(name, ())):
                self.full.discard(name)
                self.flags.set(self.index[name], False)
                log.debug("channel %s is open again", name)

    def close(self) -> None:
        if self.flags is not None:
            self.flags.close()
            self.flags = None
