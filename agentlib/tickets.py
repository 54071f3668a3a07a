"""Which fed records are done: one ticket per record, held sink deliveries, error verdicts.

The seam (:mod:`agentlib.seam`) decides *when things happen* (a record is decoded,
the agent moves past it, a sink is handed a value); this module keeps the *books*:

* :class:`Ticket`: one fed record while it is in flight. It is done when the agent
  moved past it (``ack()``) **and** no delivery it waits for is pending. Done is
  reported exactly once; a ticket given up for a retry is *abandoned* and never
  reported (the record's next ticket reports it). That rule is written once, in
  :meth:`Ledger.finish_if_done`; everything that can complete a ticket calls it.
* :class:`Ledger`: the tickets of one host. ``hold(tickets, delivery)`` keeps them
  from finishing until a produce or reply is delivered; a failed delivery, a decode
  error or an agent exception goes to ``decide``, which asks the worker's
  ``on_error`` per ticket: ACK finishes it, RETRY hands it back to the host's queue.

A callback that raises (``on_done`` or ``on_error``) is the worker's crash, never the
agent's: it is kept in ``fatal`` and the host stops with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentlib.rawrecord import RawRecord

__all__ = ["HostCrashed", "Ledger", "Ticket"]

log = logging.getLogger("agentlib.seam")

#: (record, error, attempt) → True to feed the record again (the verdict RETRY).
RetryWanted = Callable[[RawRecord, BaseException, int], Awaitable[bool]]


class HostCrashed(BaseException):
    """Unwinds the agent after a worker callback raised (BaseException: agents'
    ``except Exception`` must not swallow it)."""


class Ticket:
    """The books on one fed message while it is in flight."""

    __slots__ = ("abandoned", "attempt", "finished", "ledger", "moved_past", "pending",
                 "record")

    def __init__(self, ledger: Ledger, record: RawRecord, attempt: int) -> None:
        self.ledger = ledger
        self.record = record
        self.attempt = attempt
        self.moved_past = False   # the agent asked for what comes after it (or acked it)
        self.pending = 0          # deliveries (sinks, replies, forwards) not yet reported
        self.finished = False     # on_done was called
        self.abandoned = False    # handed back for a retry: a new ticket will finish it

    def ack(self) -> bool:
        """The agent is finished with this event; False if it already was."""
        if self.moved_past or self.abandoned:
            return False
        self.moved_past = True
        self.ledger.finish_if_done(self)
        return True


class Ledger:
    """Counts the records in flight for one host and reports each one done once.

    ``wake`` tells the host to look at ``fatal`` (or at its queue); ``requeue`` gets
    the tickets to feed again, in their original order, ahead of anything queued.
    """

    def __init__(self, agent_name: str, *, on_done: Callable[[RawRecord], None],
                 retry_wanted: RetryWanted, wake: Callable[[], None],
                 requeue: Callable[[list[Ticket]], None]) -> None:
        self._agent_name = agent_name
        self._on_done = on_done
        self._retry_wanted = retry_wanted
        self._wake = wake
        self._requeue = requeue
        self.in_flight = 0
        self.fatal: BaseException | None = None
        self.drained = asyncio.Event()
        self.drained.set()
        self._background: set[asyncio.Future[Any]] = set()
        #: :meth:`settle_counted`, bound once: ``send_counted`` keys its batches by it
        self.settle = self.settle_counted

    def fed(self, count: int = 1) -> None:
        """``count`` more records are in flight (each gets its ticket when decoded)."""
        self.in_flight += count
        self.drained.clear()

    def finish_if_done(self, ticket: Ticket) -> None:
        """Report ``ticket`` done if it is: the event-done rule, written only here.

        Done means the agent moved past the event, no delivery it waits for is
        pending, it was not reported already and not abandoned for a retry. Every
        change that can complete a ticket (the agent's ack, a delivery report, an
        ACK verdict) ends with this call, on the hot path too (once per event).
        """
        if not ticket.moved_past or ticket.pending or ticket.finished or ticket.abandoned:
            return
        ticket.finished = True
        self.in_flight -= 1
        if self.in_flight == 0:
            self.drained.set()
        try:
            self._on_done(ticket.record)
        except BaseException as exc:  # the caller's bug, not the agent's: crash
            if self.fatal is None:
                self.fatal = exc
            self._wake()

    def hold(self, tickets: list[Ticket], delivery: asyncio.Future[Any]) -> None:
        """Keep ``tickets`` from finishing until ``delivery`` completes."""
        for ticket in tickets:
            ticket.pending += 1
        self._background.add(delivery)
        delivery.add_done_callback(lambda future: self._delivered(tickets, future))

    def hold_counted(self, tickets: Sequence[Ticket]) -> None:
        """Keep ``tickets`` from finishing until :meth:`settle_counted` (or
        :meth:`reported`) names them: a delivery counted in a batch
        (``KafkaProducer.send_counted``, :mod:`agentlib.deliveries`), not a future.
        Not cancelled by :meth:`cancel_pending`: a host stopped by timeout never
        reports such a ticket done."""
        for ticket in tickets:
            ticket.pending += 1

    def settle_counted(self, batch: Any) -> None:
        """A batch of deliveries held with :meth:`hold_counted` is reported: its
        tokens are the ``tickets`` lists given there (a ``send_counted`` settle)."""
        delivered, failed = batch.outcome()
        for tickets in delivered:
            for ticket in tickets:
                self.delivered(ticket)
        for tickets, error in failed:
            self._settle(tickets, error)

    def delivered(self, ticket: Ticket) -> None:
        """One delivery :meth:`hold_counted` holds ``ticket`` for is delivered."""
        ticket.pending -= 1
        self.finish_if_done(ticket)

    def reported(self, tickets: list[Ticket], error: BaseException | None) -> None:
        """One delivery :meth:`hold_counted` holds ``tickets`` for is reported (error
        None: delivered; else ``on_error`` decides, as for a failed future)."""
        self._settle(tickets, error)

    def cancel_pending(self) -> None:
        """Give up on every delivery still awaited (the host was stopped by timeout)."""
        for future in list(self._background):
            future.cancel()

    def _delivered(self, tickets: list[Ticket], delivery: asyncio.Future[Any]) -> None:
        self._background.discard(delivery)
        self._settle(tickets, None if delivery.cancelled() else delivery.exception())

    def _settle(self, tickets: list[Ticket], error: BaseException | None) -> None:
        """A delivery held by ``tickets`` completed: finish them, or ask about the error."""
        for ticket in tickets:
            ticket.pending -= 1
        if error is None:
            for ticket in tickets:
                self.finish_if_done(ticket)
            return
        log.warning("agent %s: a sink delivery failed: %r", self._agent_name, error)
        decision = asyncio.ensure_future(self._decide_quietly(tickets, error))
        self._background.add(decision)
        decision.add_done_callback(self._background.discard)

    async def _decide_quietly(self, tickets: list[Ticket], error: BaseException) -> None:
        try:
            await self.decide(tickets, error)
        except HostCrashed:
            self._wake()  # the agent notices the crash at its next pull

    async def decide(self, tickets: list[Ticket], error: BaseException) -> None:
        """Ask ``on_error`` about each ticket; RETRY hands them back first, in order.

        Raises :class:`HostCrashed` (with ``fatal`` set) if ``on_error`` raised.
        """
        retries: list[Ticket] = []
        for ticket in tickets:
            if ticket.finished or ticket.abandoned:
                continue
            try:
                retry = await self._retry_wanted(ticket.record, error, ticket.attempt)
            except BaseException as crash:
                self.fatal = crash
                raise HostCrashed() from crash
            if retry:
                ticket.abandoned = True
                retries.append(ticket)
            elif not ticket.ack():  # the agent had moved past it: a delivery failed
                self.finish_if_done(ticket)
        if retries:
            self._requeue(retries)
