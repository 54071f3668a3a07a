"""``AppT``: what the objects an App makes (topics, streams, agents, commands) ask of it.

An :class:`agentlib.app.App` makes topics, channels, agents and commands, so
``app.py`` imports those modules; each of them keeps a reference back to its App
and calls a few of its members. Annotating that reference with ``App`` itself would
import ``app.py`` from below and close an import circle. They annotate it with this
protocol instead (Faust's name for its abstract app type), which lists exactly the
members they use; ``App`` satisfies it structurally, and mypy checks that it does
wherever an App is passed in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import click

    from agentlib.kafka import KafkaProducer, RecordMetadata
    from agentlib.replies import ReplyConsumer

__all__ = ["AppT"]


class AppT(Protocol):
    """The App as its topics, streams, agents, hosts and commands see it."""

    @property
    def id(self) -> str:
        """The application id (repartition topic names, the CLI's name)."""
        ...

    @property
    def conf(self) -> Mapping[str, Any]:
        """Settings; topics read ``key_serializer``/``value_serializer`` defaults."""
        ...

    @property
    def producer(self) -> KafkaProducer:
        """This process's producer, made on first use."""
        ...

    @property
    def replies(self) -> ReplyConsumer:
        """This process's reply consumer (``ask``/``map``/``join``), made on first use."""
        ...

    @property
    def commands(self) -> Mapping[str, click.Command]:
        """The ``@app.command``s by name."""
        ...

    async def run_client(self, work: Awaitable[Any]) -> Any:
        """Await ``work`` (a command), then stop the clients."""
        ...

    # ``channel`` is a Channel and ``host`` an AgentHost: both live above this module.

    def register_local_host(self, channel: Any, host: Any) -> None:
        """Let ``channel.send`` feed ``host`` (an AgentHost in this process)."""
        ...

    def unregister_local_host(self, channel: Any, host: Any) -> None:
        """Undo :meth:`register_local_host` (the host is stopping)."""
        ...

    def _deliver_locally(self, channel: Any, key: bytes | None, value: bytes | None,
                         headers: list[tuple[str, bytes]] | None
                         ) -> asyncio.Future[RecordMetadata]:
        """Feed a message sent to ``channel`` to the hosts of this process reading it."""
        ...
