"""``Agent``: the object ``@app.agent`` makes, as a description and as a client.

An Agent is not a running thing in agentlib. Inside agentd a worker runs it through
``agentlib.seam.AgentHost``; everywhere else (scripts, ``@app.command``s, other
agents) it is a client: ``send``/``cast`` produce to its topic, ``ask``/``map``/
``join`` also wait on this process's reply consumer (``app.replies``).

What the supervisor needs before anything runs comes from here: ``name``,
``concurrency``, ``topic_names()`` and ``topic_partitions()``. The last two include the
topics the agent reads back after ``group_by``/``through``; they are found by
*priming*: the agent function is started on a probe stream that records those calls
and stops the function at its first read. So ``group_by`` must be called before the
agent's first ``await``, as in every Faust example; a host refuses one that was not
announced.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from agentlib import reqrep
from agentlib.apptype import AppT
from agentlib.events import Event
from agentlib.streams import Stream
from agentlib.topics import Channel, CodecArg, HeadersArg, Topic, headers_list

if TYPE_CHECKING:
    from agentlib.kafka import RecordMetadata
    from agentlib.testing import AgentTestContext

__all__ = ["Agent", "AgentDecorator", "reply_topic_name"]

T = TypeVar("T")
R = TypeVar("R")
AgentFun = Callable[[Stream[Any]], Any]
#: How many requests ``map``/``kvmap`` keep outstanding at once.
MAP_WINDOW = 1000


class Agent(Generic[T]):
    """An agent: its function, its input topic, sinks and reply settings."""

    def __init__(self, fun: AgentFun, *, app: AppT, channel: Topic, name: str,
                 concurrency: int = 1, sink: Iterable[Any] | None = None,
                 use_reply_headers: bool = True, help: str | None = None,
                 isolated_partitions: bool = False, **kwargs: Any) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if isolated_partitions:  # agentd differs on purpose: see docs/decisions.md
            raise ValueError(f"{name}: isolated_partitions=True is not supported by agentd "
                             f"(one agent per instance reads all its partitions)")
        self.fun = fun
        self.app = app
        self.channel = channel
        self.name = name
        self.concurrency = concurrency
        self.sinks: list[Any] = []
        for each in sink or ():
            self.add_sink(each)
        self.use_reply_headers = use_reply_headers
        #: Faust's ``help=``: what ``agentd``/``faust agents`` lists for the agent
        self.help = help or ""
        self.isolated_partitions = False  # Faust's attribute; True is refused above
        self.options = kwargs
        self._derived_topics: list[Topic] | None = None
        self.__doc__ = fun.__doc__
        self.__wrapped__ = fun

    def __repr__(self) -> str:
        return f"<Agent: {self.name}>"

    # -- what the supervisor reads --------------------------------------------------

    def topic_names(self) -> list[str]:
        """Every topic this agent reads: its channel's, then group_by/through topics."""
        own = [] if isinstance(self.channel, Channel) else list(self.channel.topics)
        derived = [topic.get_topic_name() for topic in self._derived()]
        return own + [name for name in dict.fromkeys(derived) if name not in own]

    def get_topic_names(self) -> tuple[str, ...]:
        """Faust's name: the channel's topic names (none for an in-memory channel)."""
        return () if isinstance(self.channel, Channel) else self.channel.topics

    def info(self) -> dict[str, Any]:
        """The agent's settings as a dict, as Faust's ``Agent.info()``."""
        return {"app": self.app, "fun": self.fun, "name": self.name,
                "channel": self.channel, "concurrency": self.concurrency,
                "help": self.help, "sink": self.sinks, "on_error": None,
                "supervisor_strategy": None,
                "isolated_partitions": self.isolated_partitions}

    def topic_partitions(self) -> dict[str, int]:
        """Partition counts declared for the topics agentd creates for this agent.

        Its channel's and its ``group_by``/``through`` topics: ``partitions=``, else the
        app's ``topic_partitions`` setting (Faust's), else absent (the daemon's default);
        its sink topics only where they say ``partitions=``.
        """
        default = self.app.conf.get("topic_partitions")
        own = [] if isinstance(self.channel, Channel) else [self.channel]
        counts: dict[str, int] = {}
        read = [(topic, topic.topics) for topic in own] + [
            (topic, (topic.get_topic_name(),)) for topic in self._derived()]
        for topic, names in read:
            count = topic.partitions or default
            if count:
                counts.update(dict.fromkeys(names, int(count)))
        for sink in self.sinks:
            if isinstance(sink, Topic) and not isinstance(sink, Channel) and sink.partitions:
                counts.setdefault(sink.get_topic_name(), int(sink.partitions))
        return counts

    def _derived(self) -> list[Topic]:
        if self._derived_topics is None:
            self._derived_topics = _prime(self)
        return self._derived_topics

    def add_sink(self, sink: Any) -> None:
        """Add a sink (callable, async callable, topic or agent) for yielded values."""
        if not inspect.isasyncgenfunction(self.fun):  # Faust's ImproperlyConfigured
            raise TypeError(f"{self.name}: Agent must yield to use sinks ({sink!r})")
        self.sinks.append(sink)

    # -- client side ----------------------------------------------------------------

    def _request(self, key: Any, value: Any, partition: int | None,
                 reply_to: Any, correlation_id: str | None,
                 headers: HeadersArg = None, timestamp: float | None = None,
                 key_serializer: CodecArg = None, value_serializer: CodecArg = None
                 ) -> asyncio.Future[RecordMetadata]:
        """Encode and queue one message to this agent's topic (the delivery future)."""
        value, header_list = self._with_reply_to(value, reply_to, correlation_id, headers)
        return self.channel.send_soon(key=key, value=value, partition=partition,
                                      headers=header_list, timestamp=timestamp,
                                      key_serializer=key_serializer,
                                      value_serializer=value_serializer)

    def _with_reply_to(self, value: Any, reply_to: Any, correlation_id: str | None,
                       headers: HeadersArg) -> tuple[Any, list[tuple[str, bytes]] | None]:
        """The value and headers of a message asking for replies on ``reply_to``."""
        header_list = headers_list(headers) or []
        reply_topic = reply_topic_name(reply_to)
        if reply_topic is not None:
            correlation_id = correlation_id or str(uuid.uuid4())
            if self.use_reply_headers:
                header_list += reqrep.request_headers(reply_topic, correlation_id)
            else:
                value = reqrep.request_envelope(value, reply_topic, correlation_id)
        return value, header_list or None

    async def send(self, *, key: Any = None, value: Any = None, partition: int | None = None,
                   reply_to: Any = None, correlation_id: str | None = None,
                   headers: HeadersArg = None, timestamp: float | None = None,
                   key_serializer: CodecArg = None, value_serializer: CodecArg = None,
                   callback: Callable[[asyncio.Future[RecordMetadata]], Any] | None = None,
                   force: bool = False) -> RecordMetadata:
        """Send ``value`` to the agent; return once delivered to Kafka.

        ``reply_to`` (an agent, topic or topic name) makes it a request whose answers
        the agent produces there; ``timestamp`` (seconds) is the message's time;
        ``key_serializer``/``value_serializer``/``callback`` as ``Topic.send``'s;
        ``force`` (Faust's: send now, not on ack) changes nothing: sends go at once.
        """
        while True:
            try:
                future = self._request(key, value, partition, reply_to, correlation_id,
                                       headers, timestamp, key_serializer, value_serializer)
            except BufferError:  # producer queue full: wait for deliveries
                await asyncio.sleep(0.01)
                continue
            if callback is not None:
                future.add_done_callback(callback)
            return await future

    async def cast(self, value: Any = None, *, key: Any = None,
                   partition: int | None = None, headers: HeadersArg = None,
                   timestamp: float | None = None) -> RecordMetadata:
        """Send without expecting a reply."""
        return await self.send(key=key, value=value, partition=partition, headers=headers,
                               timestamp=timestamp)

    async def ask(self, value: Any = None, *, key: Any = None, partition: int | None = None,
                  reply_to: Any = None, correlation_id: str | None = None,
                  headers: HeadersArg = None, timestamp: float | None = None) -> T:
        """Send and wait for the first value the agent yields for it."""
        replies = await self._replies_on(reply_to)
        correlation_id = correlation_id or str(uuid.uuid4())
        answer = replies.expect(correlation_id)
        try:
            channel = self.channel
            if isinstance(channel, Topic):
                # The answer proves delivery: only a failed delivery reaches this loop
                # (as the answer's exception), a successful one does not wake it.
                value, header_list = self._with_reply_to(
                    value, reply_to or replies.topic, correlation_id, headers)
                topic, raw_key = channel.get_topic_name(), channel.encode_key(key)
                raw_value = channel.encode_value(value)
                stamp = {} if timestamp is None else {"timestamp_ms": int(timestamp * 1000)}
                while True:
                    try:
                        self.app.producer.send_unconfirmed(topic, raw_key, raw_value,
                                                           partition, header_list,
                                                           failure=answer, **stamp)
                        break
                    except BufferError:  # producer queue full: wait for deliveries
                        await asyncio.sleep(0.01)
            else:
                await self.send(key=key, value=value, partition=partition,
                                reply_to=reply_to or replies.topic,
                                correlation_id=correlation_id, headers=headers,
                                timestamp=timestamp)
            reply: T = await answer  # the reply's type is what the agent yields
            return reply
        finally:
            answer.cancel()

    async def _replies_on(self, reply_to: Any) -> Any:
        """This process's started reply consumer, which must be where ``reply_to`` (if
        given) points: Faust's asker also reads any other topic; agentd's does not."""
        replies = self.app.replies
        wanted = reply_topic_name(reply_to)
        if wanted is not None and wanted != replies.topic:
            raise ValueError(
                f"{self.name}: replies come back only on this process's reply topic "
                f"{replies.topic!r}, not {wanted!r}: use App(reply_to={wanted!r}), or "
                f"send(reply_to=...) without waiting (docs/decisions.md)")
        await replies.start()
        return replies

    async def map(self, values: AsyncIterable[Any] | Iterable[Any], key: Any = None,
                  reply_to: Any = None) -> AsyncIterator[T]:
        """Ask for each value (``key`` on each); yield replies as they arrive (any order)."""
        async for reply in self.kvmap(_with_keys(values, key), reply_to):
            yield reply

    async def kvmap(self, items: AsyncIterable[tuple[Any, Any]] | Iterable[tuple[Any, Any]],
                    reply_to: Any = None) -> AsyncIterator[T]:
        """Like ``map`` for ``(key, value)`` pairs; the key becomes the message key.

        Sending runs in a task beside the caller's loop, so replies are yielded while
        ``items`` (possibly slow or endless) is still being sent; at most
        ``MAP_WINDOW`` requests wait for their reply at once.
        """
        await self._replies_on(reply_to)
        answered: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        waiting: set[asyncio.Future[Any]] = set()
        window = asyncio.Semaphore(MAP_WINDOW)

        def settled(answer: asyncio.Future[Any]) -> None:
            waiting.discard(answer)
            window.release()
            if not answer.cancelled():
                answered.put_nowait(answer)

        async def send_all() -> None:
            deliveries: list[asyncio.Future[Any]] = []
            async for key, value in _aiter(items):
                await window.acquire()
                answer = await self._ask_soon(key, value, deliveries)
                waiting.add(answer)
                answer.add_done_callback(settled)
            await asyncio.gather(*deliveries)

        sender = asyncio.ensure_future(send_all())
        try:
            while True:
                if sender.done():
                    sender.result()  # what sending raised, if anything
                    if not waiting and answered.empty():
                        return
                if not answered.empty():
                    yield answered.get_nowait().result()
                    continue
                next_answer = asyncio.ensure_future(answered.get())
                watched = {next_answer} if sender.done() else {next_answer, sender}
                try:
                    await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not next_answer.done():
                        next_answer.cancel()
                if next_answer.done() and not next_answer.cancelled():
                    yield next_answer.result().result()
        finally:
            sender.cancel()
            for answer in list(waiting):
                answer.cancel()

    async def join(self, values: AsyncIterable[Any] | Iterable[Any], key: Any = None,
                   reply_to: Any = None) -> list[T]:
        """Ask for every value; return the replies as a list in input order."""
        return await self.kvjoin(_with_keys(values, key), reply_to)

    async def kvjoin(self, items: AsyncIterable[tuple[Any, Any]] | Iterable[tuple[Any, Any]],
                     reply_to: Any = None) -> list[T]:
        """Like ``join`` for ``(key, value)`` pairs."""
        await self._replies_on(reply_to)
        answers: list[asyncio.Future[Any]] = []
        deliveries: list[asyncio.Future[Any]] = []
        try:
            async for key, value in _aiter(items):
                answers.append(await self._ask_soon(key, value, deliveries))
            await asyncio.gather(*deliveries)
            return list(await asyncio.gather(*answers))
        finally:
            for future in answers:
                future.cancel()

    async def _ask_soon(self, key: Any, value: Any,
                        deliveries: list[asyncio.Future[Any]]) -> asyncio.Future[Any]:
        replies = self.app.replies
        correlation_id = str(uuid.uuid4())
        answer = replies.expect(correlation_id)
        while True:
            try:
                deliveries.append(self._request(key, value, None, replies.topic,
                                                correlation_id))
                return answer
            except BufferError:
                await asyncio.sleep(0.01)

    # -- testing --------------------------------------------------------------------

    def test_context(self) -> AgentTestContext:
        """An async context manager running this agent in memory (no broker)."""
        from agentlib.testing import AgentTestContext
        return AgentTestContext(self)


class AgentDecorator:
    """What ``@app.agent(...)`` returns: typed so that an agent function yielding
    ``R`` (``-> AsyncIterable[R]``) becomes an ``Agent[R]``, whose ``ask`` returns
    ``R`` under ``mypy --strict``; any other ``async def`` is an ``Agent[Any]``."""

    __slots__ = ("_create",)

    def __init__(self, create: Callable[[AgentFun], Agent[Any]]) -> None:
        self._create = create

    @overload
    def __call__(self, fun: Callable[..., AsyncIterable[R]]) -> Agent[R]: ...

    @overload
    def __call__(self, fun: Callable[..., Any]) -> Agent[Any]: ...

    def __call__(self, fun: Callable[..., Any]) -> Agent[Any]:
        return self._create(fun)


def reply_topic_name(reply_to: Any) -> str | None:
    """The topic name a ``reply_to`` (agent, topic, name or None) stands for."""
    if reply_to is None or isinstance(reply_to, str):
        return reply_to
    if isinstance(reply_to, Agent):
        return reply_to.channel.get_topic_name()
    if isinstance(reply_to, Topic):
        return reply_to.get_topic_name()
    raise TypeError(f"reply_to must be an agent, topic or topic name, not {reply_to!r}")


async def _aiter(items: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def _with_keys(values: AsyncIterable[Any] | Iterable[Any], key: Any = None
                     ) -> AsyncIterator[tuple[Any, Any]]:
    async for value in _aiter(values):
        yield key, value


class _ProbeDone(BaseException):
    """Stops a primed agent function at its first read."""


class _ProbeSource:
    """A StreamSource that records derived topics and ends the agent at the first read."""

    def __init__(self, agent: Agent[Any]) -> None:
        self.app = agent.app
        self.declared: list[Topic] = []

    async def next_event(self, release: bool, auto_ack: bool,
                         deadline: float | None) -> Event[Any] | None:
        raise _ProbeDone()

    def forward(self, event: Event[Any], topic: Topic, key: Any) -> None:
        """Never reached: the probe ends the agent before any event."""

    def declare(self, topic: Topic) -> None:
        self.declared.append(topic)

    def ack(self, event: Event[Any]) -> bool:
        return False

    @property
    def last_event(self) -> Event[Any] | None:
        return None


def _prime(agent: Agent[Any]) -> list[Topic]:
    """Start the agent function on a probe stream; return the topics it declared.

    Driven by hand (``send(None)``), so it works with or without a running loop; the
    function runs only until its first read or its first real suspension.
    """
    probe = _ProbeSource(agent)
    result = agent.fun(Stream(probe, agent.channel, prefix=agent.name))
    if not (inspect.isasyncgen(result) or inspect.iscoroutine(result)):
        return probe.declared
    step = result.__anext__() if inspect.isasyncgen(result) else result
    try:
        step.send(None)
    except (_ProbeDone, StopIteration, StopAsyncIteration):
        pass
    except Exception:
        pass
    finally:
        step.close()
        if inspect.isasyncgen(result):
            closing = result.aclose()
            try:
                closing.send(None)
            except (StopIteration, StopAsyncIteration, RuntimeError):
                pass
            finally:
                closing.close()
    return probe.declared
