"""The seam between a worker and one agent instance: raw records in, "done" out.

The worker never hands agentlib a Kafka consumer. It calls :meth:`AgentHost.feed`
with raw records and learns, through ``on_done``, when each one is finished: the
agent asked for the event after it (or filtered it out) **and** every sink for what
the agent yielded meanwhile completed (a reply or topic sink on its delivery
report, an async sink awaited). Errors, decode errors included, go to ``on_error``
with the raw record; its verdict acks the record or feeds it again before anything
after it. The contract is written in ``docs/architecture.md`` ("agentlib seam").

Bookkeeping lives in :mod:`agentlib.tickets`: every fed record gets a ticket the
moment it is decoded; the ticket counts the sink deliveries still outstanding and
whether the agent moved past it. ``on_done`` fires when both are settled, exactly
once per fed record (a retried record's old ticket is abandoned; its new one
finishes it). Decoding is :mod:`agentlib.decoding`'s; the record type,
:class:`RawRecord`, and its constructor :func:`new_raw_record` live in
:mod:`agentlib.rawrecord` and are importable from here, the worker's one entry.

An agent exception restarts the agent function on the same stream (Faust's
OneForOne supervisor), after ``on_error`` decided about the events it was holding.
If ``on_error`` raises, the host stops and that exception comes out of ``stop()``
(the ``crash`` policy).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from agentlib.apptype import AppT
from agentlib.decoding import Decoder, decode_event, event_decoder
from agentlib.events import Event, set_current_app
from agentlib.rawrecord import RawRecord, new_raw_record
from agentlib.sinks import deliver, produce_soon
from agentlib.streams import Stream
from agentlib.tickets import HostCrashed, Ledger, Ticket
from agentlib.topics import Channel, Topic

# RawRecord, new_raw_record and decode_event live below this module; the worker, the
# benches and tests import them from here, the seam's one entry.
__all__ = ["AgentHost", "ErrorVerdict", "HostedAgent", "RawRecord", "decode_event",
           "new_raw_record"]

log = logging.getLogger(__name__)

#: ``zip(records, _FIRST_ATTEMPTS)``: each record paired with attempt 1, in C.
_FIRST_ATTEMPTS = itertools.repeat(1)


class HostedAgent(Protocol):
    """What an :class:`AgentHost` reads of the agent it runs (an ``agentlib.Agent``)."""

    @property
    def app(self) -> AppT: ...

    @property
    def name(self) -> str: ...

    @property
    def channel(self) -> Topic: ...

    @property
    def fun(self) -> Callable[[Stream[Any]], Any]: ...

    @property
    def sinks(self) -> Sequence[Any]: ...

    def topic_names(self) -> list[str]: ...


class ErrorVerdict(enum.Enum):
    """What the caller's error policy decided for a record that failed."""

    ACK = "ack"      # the event is finished (logged or dead-lettered by the caller)
    RETRY = "retry"  # feed the same record again before anything after it


OnDone = Callable[[RawRecord], None]
OnError = Callable[[RawRecord, BaseException, int], Awaitable[ErrorVerdict]]
#: Test hook: (events current when the value was yielded, the value).
OnYield = Callable[[list[Event[Any]], Any], None]
#: Replaces the producer for group_by/through/echo: (record to produce) → delivery.
Forwarder = Callable[[RawRecord], Awaitable[Any] | None]


class AgentHost:
    """Runs one instance of one agent for a worker.

    ``producer`` (anything with Faust-free ``send_soon(topic, key, value, partition,
    headers)``) defaults to ``agent.app.producer``, made only when something is
    produced; ``forwarder``, ``on_yield`` and ``on_event`` exist for the broker-less
    test context.
    """

    def __init__(self, agent: HostedAgent, *, on_done: OnDone, on_error: OnError,
                 producer: Any = None, forwarder: Forwarder | None = None,
                 on_yield: OnYield | None = None,
                 on_event: Callable[[Event[Any]], None] | None = None,
                 concurrency_index: int = 0) -> None:
        self.agent = agent
        #: which of the agent's ``concurrency`` instances this is (``Stream.concurrency_index``)
        self.concurrency_index = concurrency_index
        self.app = agent.app
        self._on_error = on_error
        self._producer = producer
        self._forwarder = forwarder
        self._on_yield = on_yield
        self._on_event = on_event
        self._queue: collections.deque[tuple[RawRecord, int]] = collections.deque()
        self._current: list[Event[Any]] = []
        self._undecodable: tuple[Ticket, Exception] | None = None
        self._last_event: Event[Any] | None = None
        self._topics: dict[str, Topic] = {name: agent.channel for name in agent.channel.topics}
        self._decoders: dict[str, Decoder] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._ledger = Ledger(agent.name, on_done=on_done, retry_wanted=self._retry_wanted,
                              wake=self._wakeup.set, requeue=self._requeue)
        self.idle = asyncio.Event()
        self._pulls = 0

    # -- the worker's side --------------------------------------------------------

    async def start(self) -> None:
        """Start the agent coroutine (it waits for the first fed record)."""
        if self._task is not None:
            raise RuntimeError("AgentHost already started")
        self._declared = set(self.agent.topic_names())
        if isinstance(self.agent.channel, Channel):
            self.app.register_local_host(self.agent.channel, self)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"agent:{self.agent.name}")

    def feed(self, record: RawRecord) -> None:
        """Queue ``record`` for the agent; never blocks (the caller bounds in-flight)."""
        if self._stopping:
            raise RuntimeError("AgentHost is stopping: no more records")
        self._queue.append((record, 1))
        self._ledger.fed()
        self.idle.clear()
        self._wakeup.set()

    def feed_many(self, records: Sequence[RawRecord]) -> None:
        """:meth:`feed` for each of ``records``, in order (one wake-up for them all)."""
        if self._stopping:
            raise RuntimeError("AgentHost is stopping: no more records")
        if not records:
            return
        self._queue.extend(zip(records, _FIRST_ATTEMPTS, strict=False))
        self._ledger.fed(len(records))
        self.idle.clear()
        self._wakeup.set()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The agent's task once started (it ends with the host's fatal error, if any)."""
        return self._task

    @property
    def in_flight(self) -> int:
        """Records fed and not yet reported done."""
        return self._ledger.in_flight

    async def stop(self, timeout: float) -> None:
        """Finish what was fed, then stop; raise what ``on_error`` raised (crash policy).

        After ``timeout`` seconds the agent is cancelled and records still in flight
        are never reported done (the supervisor re-dispatches them).
        """
        self._stopping = True
        self._wakeup.set()
        if isinstance(self.agent.channel, Channel):
            self.app.unregister_local_host(self.agent.channel, self)
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(self._finish(task), timeout)
        except TimeoutError:
            log.warning("agent %s: %d record(s) unfinished after %.1fs; cancelled",
                        self.agent.name, self._ledger.in_flight, timeout)
            task.cancel()
            self._ledger.cancel_pending()
        if self._ledger.fatal is not None:
            raise self._ledger.fatal

    async def _finish(self, task: asyncio.Task[None]) -> None:
        await asyncio.shield(task)
        await self._ledger.drained.wait()

    # -- the stream's side (StreamSource) -----------------------------------------

    async def next_event(self, release: bool, auto_ack: bool,
                         deadline: float | None) -> Event[Any] | None:
        """See :class:`agentlib.streams.StreamSource`."""
        event = self.poll_event(auto_ack, release)
        while event is None:
            # Nothing handed out: say why (crash, a record that did not decode) or wait.
            if self._ledger.fatal is not None:
                raise HostCrashed()
            undecodable = self._undecodable
            if undecodable is not None:
                self._undecodable = None
                await self._report_undecodable(*undecodable)
            elif self._stopping:
                raise StopAsyncIteration
            elif not await self._wait_for_records(deadline):
                return None
            event = self.poll_event(auto_ack, False)
        return event

    def poll_event(self, auto_ack: bool, release: bool = True) -> Event[Any] | None:
        """The step of :meth:`next_event` that needs no await, alone: release the
        current events (with ``release``), then hand out the next queued record.

        The agent's plain stream calls it first for each message. None when nothing
        can be handed out now: the queue is empty, the host crashed (``fatal``), or a
        record did not decode; that one is kept in ``_undecodable``, and it and what
        follows wait until ``next_event`` (which the stream awaits on None) has
        reported it, waited for records, ended the stream or raised the crash.
        """
        if release and self._current:
            self._release_current(auto_ack)
        ledger = self._ledger
        if ledger.fatal is not None or not self._queue or self._undecodable is not None:
            return None
        record, attempt = self._queue.popleft()
        ticket = Ticket(ledger, record, attempt)
        decoder = self._decoders.get(record.topic)
        if decoder is None:
            decoder = self._decoder_of(record.topic)
        try:
            event = decoder(record, ticket)
        except Exception as exc:
            self._undecodable = (ticket, exc)
            return None
        self._pulls += 1
        self._current.append(event)
        self._last_event = event
        if self._on_event is not None:
            self._on_event(event)
        return event

    async def _wait_for_records(self, deadline: float | None) -> bool:
        """Wait until something is fed (or the host must look at ``fatal``); False
        when ``deadline`` (loop time) passed first."""
        self._wakeup.clear()
        self.idle.set()
        if deadline is None:
            await self._wakeup.wait()
            return True
        try:
            remaining = deadline - asyncio.get_running_loop().time()
            await asyncio.wait_for(self._wakeup.wait(), remaining)
        except TimeoutError:
            return False
        return True

    def _release_current(self, auto_ack: bool) -> None:
        """The agent moved past the current events: ack them (unless ``noack()``)."""
        current = self._current
        if not current:
            return
        self._current = []
        if auto_ack:
            for event in current:
                ticket = event._ticket  # Event.ack, without the call
                if ticket is not None:
                    ticket.ack()

    async def _report_undecodable(self, ticket: Ticket, exc: Exception) -> None:
        record = ticket.record
        log.warning("agent %s: cannot decode %s[%d]@%d: %r", self.agent.name,
                    record.topic, record.partition, record.offset, exc)
        await self._ledger.decide([ticket], exc)

    def forward(self, event: Event[Any], topic: Topic, key: Any) -> None:
        """Produce ``event``'s raw value to ``topic`` keyed by ``key``; it holds the event."""
        ticket = event._ticket
        assert isinstance(ticket, Ticket)
        message = event.message
        record = new_raw_record(topic.get_topic_name(), -1, -1, message.timestamp_ms,
                                topic.encode_key(key), message.value, message.headers)
        if self._forwarder is not None:
            delivery = self._forwarder(record)
            if delivery is not None:
                self._ledger.hold([ticket], asyncio.ensure_future(delivery))
            return
        self._ledger.hold([ticket], produce_soon(self._producer_now(), record.topic, record.key,
                                          record.value, list(record.headers)))

    def declare(self, topic: Topic) -> None:
        """Register a derived topic; it must be one ``topic_names()`` announced."""
        name = topic.get_topic_name()
        declared = getattr(self, "_declared", None)
        if declared is not None and name not in declared:
            raise RuntimeError(
                f"agent {self.agent.name} reads {name!r}, which topic_names() did not "
                f"announce: call group_by()/through() before the first await in the agent "
                f"so the supervisor can subscribe to it")
        self._topics[name] = topic
        self._decoders.pop(name, None)

    def ack(self, event: Event[Any]) -> bool:
        """Ack an event of a ``noack()`` stream."""
        return event.ack()

    @property
    def last_event(self) -> Event[Any] | None:
        """The event most recently handed to the agent."""
        return self._last_event

    # -- internals ----------------------------------------------------------------

    def _decoder_of(self, topic_name: str) -> Decoder:
        """The decoder for records of ``topic_name``, kept after the first record."""
        topic = self._topics.get(topic_name, self.agent.channel)
        try:
            decoder = self._decoders[topic_name] = event_decoder(topic)
        except Exception:  # an unknown codec: decode_event raises it per record
            return functools.partial(decode_event, topic)
        return decoder

    async def _retry_wanted(self, record: RawRecord, error: BaseException,
                            attempt: int) -> bool:
        return await self._on_error(record, error, attempt) is ErrorVerdict.RETRY

    def _requeue(self, tickets: list[Ticket]) -> None:
        """Feed the records of ``tickets`` again, in order, before anything queued."""
        for ticket in reversed(tickets):
            self._queue.appendleft((ticket.record, ticket.attempt + 1))
        self._wakeup.set()

    def _producer_now(self) -> Any:
        return self._producer if self._producer is not None else self.app.producer

    def _hold_events(self, events: Sequence[Event[Any]], delivery: asyncio.Future[Any]
                     ) -> None:
        self._ledger.hold([e._ticket for e in events if isinstance(e._ticket, Ticket)],
                          delivery)

    def _deliver(self, value: Any) -> Awaitable[None] | None:
        """Hand one yielded value to its reply address(es), then to every sink; what is
        left to await (an async sink), or None."""
        events = list(self._current)
        if self._on_yield is not None:
            self._on_yield(events, value)
        return deliver(value, events, self.agent.sinks, hold=self._hold_events,
                       producer=self._producer_now, ledger=self._ledger)

    async def _run(self) -> None:
        """Run the agent function; restart it after an exception, on the same stream."""
        set_current_app(self.app)  # this task's: event.send("topic name") resolves here
        stream: Stream[Any] = Stream(self, self.agent.channel, prefix=self.agent.name)
        while True:
            pulls_before = self._pulls
            try:
                await self._run_once(stream)
            except HostCrashed:
                assert self._ledger.fatal is not None
                raise self._ledger.fatal from None
            except Exception as exc:
                if self._pulls == pulls_before and not self._current:
                    # It fails before reading anything: restarting would spin forever.
                    log.error("agent %s raised before reading its stream; stopping",
                              self.agent.name)
                    self._ledger.fatal = exc
                    raise
                log.exception("agent %s raised; restarting it", self.agent.name)
                failed = [e._ticket for e in self._current if isinstance(e._ticket, Ticket)]
                self._current = []
                try:
                    await self._ledger.decide(failed, exc)
                except HostCrashed:
                    assert self._ledger.fatal is not None
                    raise self._ledger.fatal from None
                continue
            self._release_current(True)
            if self._stopping and not self._queue:
                return
            if self._pulls == pulls_before:
                raise RuntimeError(f"agent {self.agent.name} returned without reading its "
                                   f"stream; an agent must iterate its stream")
            log.warning("agent %s returned before its stream ended; restarting it",
                        self.agent.name)

    async def _run_once(self, stream: Stream[Any]) -> None:
        result = self.agent.fun(stream)
        if not inspect.isasyncgen(result):
            await result
            return
        try:
            async for value in result:
                pending = self._deliver(value)
                if pending is not None:
                    await pending
        finally:
            await result.aclose()
