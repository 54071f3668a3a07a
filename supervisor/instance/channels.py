"""An instance's end of the app's in-process channels (``app.channel()``).

Faust's channel is an in-memory queue in one worker; under agentd the sending agent
and the reading agent run in different processes. A ``channel.send()`` here becomes
a ``CHANNEL`` record on the outbound ring; the supervisor hands it, in memory, to an
instance of each agent reading that channel, whose port feeds it to its agent. See
docs/decisions.md ("Channels cross processes through the supervisor").

While the supervisor holds too many of a channel's messages for a reader, it sets the
channel's flag in shared memory, and ``send()`` here waits until it clears (Faust's
``await channel.send()`` on a full queue; ``supervisor/daemon/channelflow.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from supervisor.transport import wire
from supervisor.transport.flags import FLAGS_FD_ENV, SharedFlags

__all__ = ["ChannelPort", "inherited_flags"]

log = logging.getLogger("agentd.worker")

#: how often a sender waiting on a full channel looks at its flag again (the flag
#: clears at half the channel's bound, so the reader has work for much longer)
FLAG_POLL_S = 0.005


def inherited_flags() -> SharedFlags | None:
    """The supervisor's flags, inherited through the zygote, if it passed them."""
    fd = os.environ.get(FLAGS_FD_ENV)
    return SharedFlags.attach(int(fd)) if fd else None


class ChannelPort:
    """Sends this instance's channel messages out; feeds the ones routed here."""

    def __init__(self, app: Any, host: Any, send: Callable[[bytes], None],
                 flag_index: Mapping[str, int] | None = None,
                 flags: SharedFlags | None = None) -> None:
        from agentlib.seam import new_raw_record
        self._host = host
        self._send = send
        self._raw_record = new_raw_record
        self._offsets = itertools.count()
        #: channel name -> its "full" flag (supervisor/daemon/channelflow.py)
        self._flag_index = dict(flag_index or {})
        self._flags = flags
        #: flag index -> the future the senders of that full channel wait on
        self._waiting: dict[int, asyncio.Future[None]] = {}
        app.channel_outlet = self.send

    def send(self, name: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None) -> asyncio.Future[None] | None:
        """``channel.send()`` in this instance: to the supervisor, which routes it.

        While the channel is full (the supervisor's flag: its readers are behind) the
        message still goes, and the returned future says when the sender may go on."""
        self._send(wire.encode_channel(name, key, value, headers))
        index = self._flag_index.get(name)
        if index is None or self._flags is None or not self._flags[index]:
            return None
        waiting = self._waiting.get(index)
        if waiting is None:
            waiting = self._waiting[index] = asyncio.get_running_loop().create_future()
            self._poll(index)
        return waiting

    def _poll(self, index: int) -> None:
        """Look at a full channel's flag until it clears; then its senders go on."""
        assert self._flags is not None
        if self._flags[index]:
            asyncio.get_running_loop().call_later(FLAG_POLL_S, self._poll, index)
            return
        waiting = self._waiting.pop(index)
        if not waiting.done():
            waiting.set_result(None)

    def feed(self, view: memoryview, stopping: bool) -> None:
        """A message the supervisor routed here (this instance's agent reads it).

        Fed outside ``max_in_flight`` and never acked (the worker's ``on_done`` finds no
        partition for it): a channel is memory, there is no offset to commit.
        """
        name, message = wire.decode_channel(view)
        if stopping:
            log.debug("stopping: a message of %s is dropped", name)
            return
        self._host.feed(self._raw_record(name, 0, next(self._offsets), message.timestamp_ms,
                                         message.key, message.value, message.headers))
