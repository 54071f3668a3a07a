"""An instance's end of the app's in-process channels (``app.channel()``).

Faust's channel is an in-memory queue in one worker; under agentd the sending agent
and the reading agent run in different processes. A ``channel.send()`` here becomes
a ``CHANNEL`` record on the outbound ring; the supervisor hands it, in memory, to an
instance of each agent reading that channel, whose port feeds it to its agent. See
docs/decisions.md ("Channels cross processes through the supervisor").
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from supervisor.transport import wire

__all__ = ["ChannelPort"]

log = logging.getLogger("agentd.worker")


class ChannelPort:
    """Sends this instance's channel messages out; feeds the ones routed here."""

    def __init__(self, app: Any, host: Any, send: Callable[[bytes], None]) -> None:
        from agentlib.seam import new_raw_record
        self._host = host
        self._send = send
        self._raw_record = new_raw_record
        self._offsets = itertools.count()
        app.channel_outlet = self.send

    def send(self, name: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None) -> None:
        """``channel.send()`` in this instance: to the supervisor, which routes it."""
        self._send(wire.encode_channel(name, key, value, headers))

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
