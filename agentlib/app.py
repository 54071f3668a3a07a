"""``App``: the registry of one application's agents, tasks, timers and commands.

The App runs nothing by itself. The supervisor's zygote imports the module, reads
``app.agents`` (name → :class:`Agent`, each with ``topic_names()`` and
``concurrency``), ``app.tasks``, ``app.timers`` and ``app.commands``, and hosts
the agents through ``agentlib.seam``. Any other process uses the App as a client.

``app.producer`` and ``app.replies`` are made on first use, so importing an app
module (in the zygote, before forking) never touches Kafka. The broker address is
resolved at connection time: ``AGENTD_BROKER`` overrides ``broker=``.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

from agentlib import cli
from agentlib.agents import Agent, AgentDecorator, AgentFun
from agentlib.cron import Crontab, validate
from agentlib.naming import module_name
from agentlib.rawrecord import new_raw_record
from agentlib.records import decode_known
from agentlib.services import Service
from agentlib.streams import Stream
from agentlib.tables import table as tables
from agentlib.topics import Channel, Topic

if TYPE_CHECKING:
    import click

    from agentlib.kafka import KafkaProducer, RecordMetadata
    from agentlib.replies import ReplyConsumer

__all__ = ["App", "Timer"]

DEFAULT_BROKER = "kafka://localhost:9092"
F = TypeVar("F", bound=Callable[..., Any])
#: ``(channel name, key bytes, value bytes, headers)``: hands a channel message on;
#: returns None, or a future that completes when the channel may be sent to again
ChannelOutlet = Callable[[str, "bytes | None", "bytes | None",
                          "list[tuple[str, bytes]] | None"], "asyncio.Future[None] | None"]
S = TypeVar("S", bound=Service)
#: ``@app.agent`` keywords that describe the topic it makes (Faust passes them on to
#: ``app.topic``), rather than the agent
_AGENT_TOPIC_SETTINGS = frozenset({
    "key_type", "value_type", "schema", "key_serializer", "value_serializer",
    "partitions", "replicas", "retention", "compacting", "deleting", "internal",
    "config", "maxsize", "allow_empty", "acks"})


@dataclass(frozen=True, slots=True)
class Timer:
    """A function to run every ``seconds`` (``@app.timer``)."""

    seconds: float
    fun: Callable[[], Awaitable[Any]]
    on_leader: bool = False


class Settings(dict[str, Any]):
    """``app.conf``: the App's settings, readable as keys or attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class App:
    """A Faust-compatible application: ``App("id", broker="kafka://host:9092")``."""

    def __init__(self, id: str, *, broker: str | Sequence[str] | None = None,
                 value_serializer: str = "json", key_serializer: str = "raw",
                 **settings: Any) -> None:
        self.id = id
        self.conf = Settings(id=id, broker=broker or DEFAULT_BROKER,
                             value_serializer=value_serializer,
                             key_serializer=key_serializer, **settings)
        self.agents: dict[str, Agent[Any]] = {}
        self.tasks: list[Callable[..., Awaitable[Any]]] = []
        self.timers: list[Timer] = []
        #: ``@app.task(on_leader=True)``s: run by the group's leader daemon only
        self.leader_tasks: list[Callable[..., Awaitable[Any]]] = []
        self.crontabs: list[Crontab] = []
        self.services: list[type[Service]] = []
        self.commands: dict[str, click.Command] = {}
        self.tables: dict[str, tables.Table] = {}
        self._producer: KafkaProducer | None = None
        self._replies: ReplyConsumer | None = None
        self._local_hosts: dict[str, list[Any]] = {}
        self._channel_offsets = itertools.count()
        #: under agentd, how a channel message leaves this instance for the supervisor
        #: (it delivers it to the channel's readers, whichever instances they run in)
        self.channel_outlet: ChannelOutlet | None = None

    def __repr__(self) -> str:
        return f"<App: {self.id}>"

    @property
    def broker(self) -> str | Sequence[str]:
        """The configured broker (``AGENTD_BROKER`` still overrides it on connect)."""
        broker: str | Sequence[str] = self.conf["broker"]
        return broker

    # -- declarations ---------------------------------------------------------------

    def topic(self, *topics: str, **kwargs: Any) -> Topic:
        """Describe a topic (the first name is the main one), as ``faust.App.topic``."""
        return Topic(self, *topics, **kwargs)

    def channel(self, *, key_type: Any = None, value_type: Any = None,
                maxsize: int | None = None, **kwargs: Any) -> Channel:
        """An in-process channel (never a Kafka topic)."""
        return Channel(self, key_type=key_type, value_type=value_type, maxsize=maxsize,
                       **kwargs)

    def agent(self, channel: Topic | str | None = None, *, name: str | None = None,
              concurrency: int = 1, sink: Iterable[Any] | None = None,
              use_reply_headers: bool = True, **kwargs: Any) -> AgentDecorator:
        """Decorate an ``async def f(stream)`` into an :class:`Agent`.

        ``name`` defaults to ``module.function``; with no channel the agent reads
        the topic ``f"{app id}-{name}"``. An agent whose function is typed
        ``-> AsyncIterable[R]`` is an ``Agent[R]``: ``await agent.ask(...)`` is an ``R``.
        """
        def create(fun: AgentFun) -> Agent[Any]:
            if not (inspect.iscoroutinefunction(fun) or inspect.isasyncgenfunction(fun)):
                raise TypeError(f"@app.agent needs an 'async def' function, got {fun!r}")
            agent_name = name or f"{module_name(fun.__module__)}.{fun.__qualname__}"
            if agent_name in self.agents:
                raise ValueError(f"app {self.id!r} already has an agent named {agent_name!r}")
            topic = self._agent_channel(channel, agent_name, kwargs)
            agent: Agent[Any] = Agent(fun, app=self, channel=topic, name=agent_name,
                                      concurrency=concurrency, sink=sink,
                                      use_reply_headers=use_reply_headers, **kwargs)
            self.agents[agent_name] = agent
            return agent
        return AgentDecorator(create)

    actor = agent  # Faust's alias

    def _agent_channel(self, channel: Topic | str | None, agent_name: str,
                       kwargs: dict[str, Any]) -> Topic:
        """The agent's topic, as Faust's ``Agent._prepare_channel`` makes it: with no
        channel or a topic name, ``key_type``/``value_type``/``schema`` and any other
        ``app.topic`` setting (``partitions=``...) in ``kwargs`` describe that topic (and
        are taken out of ``kwargs``); a Topic object already says them itself."""
        settings = {name: kwargs.pop(name) for name in list(kwargs)
                    if name in _AGENT_TOPIC_SETTINGS}
        if isinstance(channel, Topic):
            typed = sorted(name for name in ("key_type", "value_type", "schema")
                           if settings.get(name) is not None)
            if typed:
                raise TypeError(f"@app.agent({channel!r}, {', '.join(typed)}=...): give "
                                f"{'/'.join(typed)} to app.topic(), not to a topic's agent")
            return channel
        if channel is None:
            return self.topic(f"{self.id}-{agent_name}", has_prefix=True, **settings)
        return self.topic(channel, **settings)

    def Table(self, name: str, *, default: Callable[[], Any] | None = None,
              **kwargs: Any) -> tables.Table:
        """A partitioned, changelog-backed table (Faust's ``app.Table``)."""
        return self._add_table(tables.Table(self, name, default=default, **kwargs))

    def GlobalTable(self, name: str, *, default: Callable[[], Any] | None = None,
                    **kwargs: Any) -> tables.GlobalTable:
        """A table every instance reads whole (Faust's ``app.GlobalTable``)."""
        table = tables.GlobalTable(self, name, default=default, **kwargs)
        self._add_table(table)
        return table

    def _add_table(self, table: tables.Table) -> tables.Table:
        if table.name in self.tables:
            raise ValueError(f"app {self.id!r} already has a table named {table.name!r}")
        self.tables[table.name] = table
        return table

    @overload
    def task(self, fun: F) -> F: ...

    @overload
    def task(self, fun: None = None, *, on_leader: bool = False,
             traced: bool = True) -> Callable[[F], F]: ...

    def task(self, fun: F | None = None, *, on_leader: bool = False,
             traced: bool = True) -> Any:
        """Register an ``async def`` to run once when the app's worker starts.

        The function may take one argument, the app. Tasks and timers run only under
        agentd, in one instance per app: as in Faust, ``@app.command``s, client
        scripts and ``test_context`` never start them. ``on_leader=True``: only on the
        daemon that leads the group, started when it becomes leader, cancelled when
        it stops being leader.
        """
        def register(task: F) -> F:
            (self.leader_tasks if on_leader else self.tasks).append(task)
            return task
        return register if fun is None else register(fun)

    def timer(self, interval: float | datetime.timedelta, on_leader: bool = False,
              traced: bool = True, name: str | None = None,
              max_drift_correction: float = 0.1) -> Callable[[F], F]:
        """Register an ``async def`` to run every ``interval`` seconds in the worker.

        Faust's signature; ``traced``, ``name`` and ``max_drift_correction`` are
        accepted and ignored. The first run is one interval after the worker starts.
        """
        seconds = (interval.total_seconds() if isinstance(interval, datetime.timedelta)
                   else float(interval))
        if seconds <= 0:
            raise ValueError("timer interval must be positive")

        def register(fun: F) -> F:
            self.timers.append(Timer(seconds, fun, on_leader))
            return fun
        return register

    def crontab(self, cron_format: str, *, timezone: datetime.tzinfo | None = None,
                on_leader: bool = False, traced: bool = True) -> Callable[[F], F]:
        """Register an ``async def`` to run on a cron schedule (Faust's ``app.crontab``).

        It runs where timers run (the one instance that runs the app's tasks) and
        ``on_leader`` takes the same gate as ``timer(on_leader=True)``. ``timezone``
        reads the expression in that zone (UTC when omitted); a sixth field is seconds.
        """
        validate(cron_format)

        def register(fun: F) -> F:
            self.crontabs.append(Crontab(cron_format, fun, timezone, on_leader))
            return fun
        return register

    def service(self, cls: type[S]) -> type[S]:
        """Register a :class:`Service` subclass to run with the app (Faust's
        ``app.service``): made, started and stopped where ``@app.task``s run."""
        self.services.append(cls)
        return cls

    def stream(self, channel: Any, **kwargs: Any) -> Stream[Any]:
        """Faust's ``app.stream`` over an iterable or async iterable of values (stream
        operators such as ``take`` in a task); a topic or channel raises ``TypeError``:
        under agentd only agents read those."""
        from agentlib.iterstream import iterable_stream
        return iterable_stream(self, channel, Topic(self, f"{self.id}-stream"))

    async def send(self, channel: Channel | str, key: Any = None, value: Any = None,
                   partition: int | None = None, timestamp: float | None = None,
                   headers: Any = None, schema: Any = None, key_serializer: Any = None,
                   value_serializer: Any = None, callback: Any = None) -> Any:
        """Send one message to a topic or channel (named or made), as ``faust.App.send``
        (``schema=`` per message is refused: give the topic its schema)."""
        if schema is not None:
            raise TypeError("app.send(schema=...) is not supported by agentd: "
                            "app.topic(name, schema=...) and send to that topic")
        target = self.topic(channel) if isinstance(channel, str) else channel
        return await target.send(key=key, value=value, partition=partition, headers=headers,
                                 timestamp=timestamp, key_serializer=key_serializer,
                                 value_serializer=value_serializer, callback=callback)

    def command(self, *options: Callable[[Any], Any], name: str | None = None
                ) -> Callable[[F], F]:
        """Register a CLI command; ``options`` are ``cli.argument``/``cli.option`` calls."""
        def register(fun: F) -> F:
            command = cli.make_command(self, fun, options, name=name)
            assert command.name is not None
            self.commands[command.name] = command
            return fun
        return register

    def main(self, argv: Sequence[str] | None = None) -> None:
        """Run the app's commands as a CLI (``python -m mymodule send_value 4 8``)."""
        cli.build_group(self).main(args=list(argv) if argv is not None else None)

    # -- client machinery -----------------------------------------------------------

    @property
    def producer(self) -> KafkaProducer:
        """This process's producer, made on first use (no Kafka until a send)."""
        if self._producer is None:
            from agentlib.kafka import KafkaProducer
            self._producer = KafkaProducer(self.conf["broker"])
        return self._producer

    @property
    def replies(self) -> ReplyConsumer:
        """This process's reply consumer (``ask``/``map``/``join``), made on first use."""
        if self._replies is None:
            from agentlib.replies import ReplyConsumer
            # Faust's ``reply_to`` setting: a fixed reply topic (else f-reply-<uuid4>)
            self._replies = ReplyConsumer(self.conf["broker"], topic=self.conf.get("reply_to"),
                                          decode_value=decode_known)
        return self._replies

    async def run_client(self, work: Awaitable[Any]) -> Any:
        """Await ``work`` (a command), then stop the reply consumer and flush sends."""
        try:
            return await work
        finally:
            await self.stop_clients()

    async def stop_clients(self, timeout: float = 10.0) -> None:
        """Stop the reply consumer and flush the producer, if they were made."""
        if self._replies is not None and self._replies.started:
            await self._replies.stop(timeout)
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, timeout)

    # -- in-process channels --------------------------------------------------------

    def register_local_host(self, channel: Channel, host: Any) -> None:
        """Let ``channel.send`` feed ``host`` (an AgentHost in this process)."""
        self._local_hosts.setdefault(channel.get_topic_name(), []).append(host)

    def unregister_local_host(self, channel: Channel, host: Any) -> None:
        """Undo :meth:`register_local_host` (the host is stopping)."""
        hosts = self._local_hosts.get(channel.get_topic_name(), [])
        if host in hosts:
            hosts.remove(host)

    def _deliver_locally(self, channel: Channel, key: bytes | None, value: bytes | None,
                         headers: list[tuple[str, bytes]] | None
                         ) -> asyncio.Future[RecordMetadata]:
        from agentlib.kafka import RecordMetadata
        if self.channel_outlet is not None:
            # Sent, not delivered: the future completes once the message is handed to
            # the supervisor (in memory, like Faust's queue; see docs/decisions.md),
            # or, while the channel's readers are behind, once they have caught up
            # (Faust's full queue: supervisor/daemon/channelflow.py).
            full = self.channel_outlet(channel.get_topic_name(), key, value, headers)
            sent = asyncio.get_running_loop().create_future()
            meta = RecordMetadata(channel.get_topic_name(), 0, -1, None)
            if full is None:
                sent.set_result(meta)
            else:
                full.add_done_callback(functools.partial(_complete, sent, meta))
            return sent
        hosts = self._local_hosts.get(channel.get_topic_name())
        if not hosts:
            raise RuntimeError(f"nothing in this process reads {channel!r}")
        record = new_raw_record(channel.get_topic_name(), 0, next(self._channel_offsets),
                                None, key, value, tuple(headers or ()))
        for host in hosts:
            host.feed(record)
        done = asyncio.get_running_loop().create_future()
        done.set_result(RecordMetadata(record.topic, 0, -1, None))
        return done


def _complete(future: asyncio.Future[Any], result: Any, _: Any = None) -> None:
    """Complete ``future`` with ``result`` unless it is done (a cancelled sender)."""
    if not future.done():
        future.set_result(result)
