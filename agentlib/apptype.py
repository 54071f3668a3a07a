"""``AppT``: what the objects an App makes (topics, streams, agents, commands) ask of it.

An :class:`agentlib.app.App` makes topics, channels, agents and commands, so
``app.py`` imports those modules; each of them keeps a reference back to its App
and calls a few of its members. Annotating that reference with ``App`` itself would
import ``app.py`` from below and close an import circle. They annotate it with this
protocol instead (Faust's name for its abstract app type), which lists exactly the
members they use; ``App`` satisfies it structurally, and mypy checks that it does
wherever an App is passed in.

Users reach the App through these objects too (``agent.app.topic(...)``, as Faust's
``AgentT.app`` is its ``AppT``), so the protocol also lists the App's public
declarations. Their results are typed ``Any`` here: ``Topic``, ``Channel`` and
``Agent`` live above this module, and naming them would close the circle again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
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

    @property
    def broker(self) -> str | Sequence[str]:
        """The configured broker."""
        ...

    @property
    def agents(self) -> Mapping[str, Any]:
        """The app's agents by name."""
        ...

    def topic(self, *topics: str, **kwargs: Any) -> Any:
        """Describe a topic (a ``Topic``)."""
        ...

    def channel(self, *, key_type: Any = None, value_type: Any = None,
                maxsize: int | None = None, **kwargs: Any) -> Any:
        """An in-process channel (a ``Channel``)."""
        ...

    def agent(self, channel: Any = None, *, name: str | None = None,
              concurrency: int = 1, sink: Iterable[Any] | None = None,
              use_reply_headers: bool = True, **kwargs: Any) -> Callable[[Any], Any]:
        """Decorate an ``async def f(stream)`` into an ``Agent``."""
        ...

    def timer(self, interval: Any, on_leader: bool = False, traced: bool = True,
              name: str | None = None, max_drift_correction: float = 0.1
              ) -> Callable[[Any], Any]:
        """Register an ``async def`` to run every ``interval`` seconds."""
        ...

    def command(self, *options: Callable[[Any], Any], name: str | None = None
                ) -> Callable[[Any], Any]:
        """Register a CLI command."""
        ...

    def main(self, argv: Sequence[str] | None = None) -> None:
        """Run the app's commands as a CLI."""
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
