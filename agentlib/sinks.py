"""Where a yielded value goes: the asker's reply topic, then each of the agent's sinks.

Faust's order: a request's ``@ReqRepResponse`` is produced first, then the value goes
to every sink in declaration order. Produces (replies, topic and agent sinks) are
queued at once and return their delivery future, which the seam attaches to the
events being processed (they are done only when it resolves); an async sink is
awaited here, so it holds the agent before its next read, as the seed guide says.
A topic sink's output (the common case) has no future: its delivery is counted in
a batch (:func:`send_counted`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentlib.events import Event
from agentlib.reqrep import response_bytes
from agentlib.tickets import Ledger, Ticket
from agentlib.topics import Topic

__all__ = ["deliver", "produce_soon"]

#: (events the delivery belongs to, the delivery future) → the seam holds them.
Hold = Callable[[Sequence[Event[Any]], "asyncio.Future[Any]"], None]


def produce_soon(producer: Any, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes]] | None,
                 partition: int | None = None) -> asyncio.Future[Any]:
    """Queue a message now (ordered before later ones) and return its delivery future.

    A full producer queue does not raise: the send is retried in a task.
    """
    try:
        future: asyncio.Future[Any] = producer.send_soon(topic, key, value, partition,
                                                         headers or None)
        return future
    except BufferError:
        return asyncio.ensure_future(
            _produce_when_room(producer, topic, key, value, headers, partition))


async def _produce_when_room(producer: Any, topic: str, key: bytes | None,
                             value: bytes | None, headers: list[tuple[str, bytes]] | None,
                             partition: int | None = None) -> Any:
    while True:
        try:
            future = producer.send_soon(topic, key, value, partition, headers or None)
        except BufferError:  # local queue full: wait for deliveries (backpressure)
            await asyncio.sleep(0.01)
            continue
        return await future


def send_to_topic(topic: Topic, value: Any) -> asyncio.Future[Any]:
    """Queue ``value`` to a topic sink now; its delivery's future.

    A task per output (``ensure_future(topic.send(...))``) cost the worker ~14 % of its
    loop in bench/eos.py; encoding and queueing at once keeps the output's order with
    the others and leaves one future. A full producer queue waits in a task instead
    (backpressure), as ``produce_soon`` does.
    """
    try:
        return topic.send_soon(value=value)
    except BufferError:
        return asyncio.ensure_future(_send_when_room(topic, value))


async def _send_when_room(topic: Topic, value: Any) -> Any:
    while True:
        try:
            future = topic.send_soon(value=value)
        except BufferError:  # local queue full: wait for deliveries (backpressure)
            await asyncio.sleep(0.01)
            continue
        return await future


def send_counted(topic: Topic, value: Any, events: Sequence[Event[Any]],
                 ledger: Ledger) -> bool:
    """Queue ``value`` to a topic sink, its delivery counted in a batch (no future):
    ``events`` are held until the batch is reported (``Ledger.settle_counted``).

    False when that cannot be done (a producer without ``send_counted``, as tests'
    fakes; a full local queue): the caller takes the future path, which waits.

    A transactional producer's output (an agentd instance under exactly once) holds
    nothing: its transaction's commit, which waits for every message and fails if one
    failed, comes before the record's ACK leaves the instance, so a report per message
    would prove nothing more; without it the record is done once the agent moved past
    it (the commit's quiesce waits for no delivery) and no report is counted.
    """
    producer = topic.app.producer
    if getattr(producer, "transactional", False) is True:  # under exactly once
        try:
            producer.send_in_transaction(topic.get_topic_name(), None,
                                         topic.encode_value(value))
        except BufferError:
            return False
        return True
    send = getattr(producer, "send_counted", None)
    if send is None:
        return False
    tickets = [event._ticket for event in events if type(event._ticket) is Ticket]
    try:
        send(topic.get_topic_name(), None, topic.encode_value(value), None, None, tickets,
             ledger.settle)
    except BufferError:
        return False
    ledger.hold_counted(tickets)
    return True


def deliver(value: Any, events: Sequence[Event[Any]], sinks: Sequence[Any], *,
            hold: Hold, producer: Callable[[], Any], ledger: Ledger | None = None,
            replies: bool = True) -> Awaitable[None] | None:
    """Send ``value`` to the reply address of each request in ``events``, then to sinks.

    Synchronous until a callable sink returns an awaitable: then the rest (awaiting it,
    then the sinks after it) is returned for the caller to await; None when all is
    queued (a coroutine per yielded value was ~5 % of a forwarding agent's loop).
    ``producer`` is called only when something must be produced, so agents with
    callable sinks alone never need Kafka. With ``ledger``, topic sinks' deliveries
    are counted in batches (:func:`send_counted`).
    """
    if replies:
        for event in events:
            if event.reply_to:
                reply = response_bytes(event.key, value, event.correlation_id)
                hold([event], produce_soon(producer(), event.reply_to, None, reply, None))
    for index, sink in enumerate(sinks):
        if type(sink) is Topic:  # queued now: no task per output (the common sink)
            if ledger is None or not send_counted(sink, value, events, ledger):
                hold(events, send_to_topic(sink, value))
            continue
        if isinstance(sink, Topic) or hasattr(sink, "topic_names"):  # a channel, an agent
            hold(events, asyncio.ensure_future(sink.send(value=value)))
            continue
        result = sink(value)
        if inspect.isawaitable(result):
            return _then_deliver(result, value, events, sinks[index + 1:], hold=hold,
                                 producer=producer, ledger=ledger)
    return None


async def _then_deliver(result: Awaitable[Any], value: Any, events: Sequence[Event[Any]],
                        sinks: Sequence[Any], *, hold: Hold, producer: Callable[[], Any],
                        ledger: Ledger | None) -> None:
    """Await an async sink's ``result``, then deliver to the sinks after it."""
    await result
    rest = deliver(value, events, sinks, hold=hold, producer=producer, ledger=ledger,
                   replies=False)
    if rest is not None:
        await rest
