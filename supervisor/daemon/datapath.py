"""The supervisor's data path: fetch a batch, route and encode it, write it to the rings,
and the flow control around that (backlogs, pause and resume, partitions moving
between instances).

Everything here runs once per fetched batch or per loop turn, and its cost per
message is what the supervisor costs (bench/profile_agentd.py). :class:`DataPath`
owns the consumer, the offset tracker, the paused partitions and the moves; it works
on the fleet's instances (each instance keeps its own backlog). The commit leg
(``commit.py``, where the tracker is defined) reads acks into the same tracker.

Flow control (issue 12, ``instances.py`` has the marks): a full ring queues records
in the instance's backlog; only a backlog above its high-water mark pauses the
partitions feeding it, and they resume below the low-water mark, so librdkafka's
prefetch is not thrown away on every full ring. A paused partition is held by a set
of instances (``paused_by``): it resumes when the last of them lets go, and the resume
wakes librdkafka's fetcher (:func:`wake_fetchers`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from supervisor.daemon.commit import OffsetTracker
from supervisor.daemon.failures import FailedRecord, RecordFailures
from supervisor.daemon.fleet import Fleet
from supervisor.daemon.instances import AgentRuntime, Instance, Run
from supervisor.daemon.moves import PartitionMoves
from supervisor.transport import wire
from supervisor.transport.runscan import record_sizes, scan_run

__all__ = ["BLOCKED_WAIT", "FETCH_BATCH", "IDLE_WAIT", "DataPath", "wake_fetchers"]

log = logging.getLogger("agentd")

FETCH_BATCH = 2000
IDLE_WAIT = 0.05       # poll() timeout when nothing is happening
BLOCKED_WAIT = 0.001   # when some instance waits for ring space
#: One subscribed agent of a partition in ``dispatch``: the agent, its offset-tracker
#: lane, and under partition ordering its instance (None: routed per message).
_Target = tuple[AgentRuntime, Any, "Instance | None"]
#: A run's partition, its topic index and its targets.
_Run = tuple[tuple[str, int], int, list[_Target]]
#: A partition's topic index, its targets, and whether any routes by key.
_Found = tuple[int, list[_Target], bool]


class DataPath:
    """Fetch, dispatch, pump and backpressure for one consumer and the fleet's instances."""

    def __init__(self, consumer: Consumer | None, fleet: Fleet) -> None:
        self.consumer = consumer
        self.fleet = fleet
        self.instances = fleet.instances          # the fleet's list, shared
        #: what was dispatched; the commit leg marks what was acked
        self.tracker = OffsetTracker()
        self.moves = PartitionMoves()              # partitions between instances
        self.next_move_check = 0.0
        #: (topic index, partition) → the instances holding it paused
        self.paused_by: dict[tuple[int, int], set[Instance]] = {}
        #: the error policy for records the daemon fails itself (set with the consumer)
        self.failures: RecordFailures | None = None
        #: a fatal error the consumer reported: it fetches nothing more (membership.py)
        self.fatal: KafkaError | None = None

    def fetch(self, busy: bool, waiting: bool) -> bool:
        """Consume one batch and dispatch it; True when messages came. ``busy``: the
        last turn moved something, so do not wait; ``waiting``: work is held elsewhere
        (a backlog, a handover) that the consumer cannot wake on, so wait briefly."""
        assert self.consumer is not None
        blocked = waiting or any(inst.pending for inst in self.instances)
        timeout = 0.0 if busy else (BLOCKED_WAIT if blocked else IDLE_WAIT)
        if timeout:
            # Wait with poll(), which returns on the first message. consume(n, timeout)
            # returns only when it has n messages or the timeout passed, so an idle
            # supervisor held a lone record (an ask) up to IDLE_WAIT before dispatch.
            first = self.consumer.poll(timeout)
            if first is None:
                return False
            messages = [first, *self.consumer.consume(FETCH_BATCH - 1, 0)]
        else:
            messages = self.consumer.consume(FETCH_BATCH, 0)
        if messages:
            self.dispatch(messages)
        return bool(messages)

    def dispatch(self, messages: list[Any]) -> None:
        """Route each message to one instance per subscribed agent, then write the
        batches (the hot path).

        It works per *run*: consecutive messages of one partition, which is how
        librdkafka hands out what it fetched. Per message it only reads the Message,
        encodes it and appends offset, key and bytes to the run; each run is then
        dispatched at once (:meth:`_dispatch_run`), with one call per run for the
        offset tracker, the instance's unacked records and its batch."""
        encode = wire.encode_record
        batches: dict[Instance, list[Run]] = {}
        # Per partition in this batch, looked up once: its topic index and its targets.
        targets_of: dict[tuple[str, int], _Found] = {}
        i, end = 0, len(messages)
        while i < end:
            msg = messages[i]
            if msg.error() is not None:
                self.on_consume_error(msg.error())
                i += 1
                continue
            tp = (msg.topic(), msg.partition())
            found = targets_of.get(tp)
            if found is None:
                found = targets_of[tp] = self._targets_of(tp)
            tidx = found[0]
            run: _Run = (tp, tidx, found[1])
            offsets: list[int] = []
            keys: list[bytes | None] | None = [] if found[2] else None
            records: list[bytes] = []
            # The per-message loop (compiled when built; runscan.py has both).
            stop = scan_run(messages, i, tp[0], tp[1], tidx, offsets, keys, records)
            if offsets:
                self._dispatch_run(run, offsets, keys, records, batches)
            if stop >= 0:
                i = stop
                continue
            # It stopped at a message of the same partition whose headers confluent-kafka
            # cannot read (a header name that is not UTF-8; legal in the protocol,
            # non-Java clients write them). The record goes, headers dropped, to the
            # error policy instead of killing the supervisor on every fetch; its
            # headers() is not called again (runscan.scan_run_py says why).
            i = -stop - 1
            msg = messages[i]
            ts_type, ts = msg.timestamp()
            self._dispatch_run(run, [msg.offset()], [msg.key()], [encode(
                tidx, tp[1], msg.offset(), ts if ts_type else -1, msg.key(), msg.value(),
                None)], batches, "a header name is not UTF-8 (confluent-kafka cannot "
                "decode it); headers dropped")
            i += 1
        for inst, runs in batches.items():
            newly_blocked = inst.submit_runs(runs)
            if newly_blocked:
                self.pause(inst, newly_blocked)

    def _targets_of(self, tp: tuple[str, int]) -> _Found:
        """``dispatch``'s per-partition lookups, made once per batch: the topic's index
        and, per subscribed agent, its offset-tracker lane and, under partition
        ordering (the key plays no part), its instance; and whether any agent routes by
        key (else the run's Kafka keys are not collected)."""
        targets: list[_Target] = []
        for agent in self.fleet.subscriptions[tp[0]]:
            lane = self.tracker.lane(tp, agent.lane)
            owner = None
            if agent.router.ordering == "partition":
                owner = agent.instances[agent.router.route(tp, None)]
            targets.append((agent, lane, owner))
        by_key = any(owner is None for _agent, _lane, owner in targets)
        return self.fleet.topic_index[tp[0]], targets, by_key

    def _dispatch_run(self, run: _Run, offsets: list[int], keys: list[bytes | None] | None,
                      records: list[bytes], batches: dict[Instance, list[Run]],
                      unreadable: str | None = None) -> None:
        """One run of a partition's messages (strictly increasing offsets; their Kafka
        keys, None when no agent routes by key, and encoded records) to each subscribed
        agent: into the offset tracker, then held for a move, or kept whole as a run
        of the instance's unacked records and queued for its ring. The usual case
        (partition ordering, nothing too large for the ring, no move) costs one call
        per run; the rest goes message by message."""
        tp, tidx, targets = run
        moving = self.moves.moving
        shared = len(targets) > 1  # each instance's run owns its lists
        nbytes, longest = record_sizes(records)
        for agent, lane, owner in targets:
            if owner is None or unreadable is not None or longest > owner.max_record_size:
                self._dispatch_each(run, agent, lane, owner, offsets, keys, records, batches,
                                    unreadable)
                continue
            lane.dispatched_many(offsets, increasing=True)
            if moving:
                move = moving.get((agent.lane, tp))
                if move is not None:  # wait until the old owner is done with tp
                    move.held.extend(zip([(tidx, tp[1], o) for o in offsets], records,
                                         strict=True))
                    continue
            held = owner.unacked.add_run(
                tidx, tp[1], list(offsets) if shared else offsets,
                list(records) if shared else records, True, nbytes)
            batch = batches.get(owner)
            if batch is None:
                batches[owner] = held
            else:
                batch += held

    def _dispatch_each(self, run: _Run, agent: AgentRuntime, lane: Any, owner: Instance | None,
                       offsets: list[int], keys: list[bytes | None] | None,
                       records: list[bytes],
                       batches: dict[Instance, list[Run]], unreadable: str | None) -> None:
        """:meth:`_dispatch_run` for one agent, message by message: routed by key or
        round-robin when there is no ``owner``, and a record that cannot go into a
        ring (``unreadable``, or too large) to the error policy, after the offsets up
        to it are in the tracker (the policy may ack it at once). Each instance's share
        is then held as one run (offsets still increase within it)."""
        tp, tidx, _targets = run
        moving = self.moves.moving
        route, instances = agent.router.route, agent.instances
        dispatched: list[int] = []
        shares: dict[Instance, tuple[list[int], list[bytes | None]]] = {}
        if keys is None:  # partition ordering (a record too large): no key is read
            keys = [None] * len(offsets)
        for offset, key, encoded in zip(offsets, keys, records, strict=True):
            dispatched.append(offset)
            inst = owner if owner is not None else instances[route(tp, key)]
            if unreadable is not None or len(encoded) > inst.max_record_size:
                lane.dispatched_many(dispatched, True)  # before the policy may ack it
                dispatched.clear()
                self.fail_record(agent, tp[0], encoded, unreadable or
                                 f"record of {len(encoded)} bytes exceeds the ring "
                                 f"({inst.max_record_size} bytes max; raise ring_size)")
                continue
            if moving:
                move = moving.get((agent.lane, tp))
                if move is not None:  # wait until the old owner is done with tp
                    move.held.append(((tidx, tp[1], offset), encoded))
                    continue
            share = shares.get(inst)
            if share is None:
                share = shares[inst] = ([], [])
            share[0].append(offset)
            share[1].append(encoded)
        lane.dispatched_many(dispatched, True)
        for inst, (inst_offsets, inst_records) in shares.items():
            held = inst.unacked.add_run(tidx, tp[1], inst_offsets, inst_records, True)
            batch = batches.get(inst)
            if batch is None:
                batches[inst] = held
            else:
                batch += held

    def pump_instances(self) -> bool:
        moved = False
        for inst in self.instances:
            if (inst.pending or inst.window or inst.controls) and inst.pump():
                moved = True
            if inst.paused:  # resumes below the backlog's low-water mark (hysteresis)
                released = inst.release_paused()
                if released:
                    self.resume(inst, released)
        return moved

    def finish_moves(self) -> None:
        """Hand each moved partition's held records to its new owner once the old owner
        is done with it (checked every 20 ms: a scan of the old owner's records)."""
        now = time.monotonic()
        if now < self.next_move_check:
            return
        self.next_move_check = now + 0.02
        for move in self.moves.finished():
            tkey = (move.topic_index, move.tp[1])
            # The old owner closes its table shards of the partition; the new one
            # waits to open them (RocksDB admits one process), then is given records.
            move.old.queue_control(wire.encode_release(move.tp[1]))
            new = move.new
            new.unacked.update(move.held)
            self.resume(new, [tkey])
            newly_blocked = new.submit([key for key, _ in move.held])
            if newly_blocked:
                self.pause(new, newly_blocked)
            log.info("%s: took over %s[%d] (%d held records)", new.label, move.tp[0],
                     move.tp[1], len(move.held))

    def begin_moves(self, agent: AgentRuntime, moved: dict[tuple[str, int], int],
                    before: dict[tuple[str, int], int]) -> None:
        """Partitions the router moved between instances: pause them until their old
        owner is done (``supervisor/daemon/moves.py``)."""
        started = self.moves.begin(agent, moved, before, self.fleet.topic_index)
        waiting = {move.tp for move in started}
        for tp, new_index in moved.items():
            old_index = before.get(tp)
            if old_index is not None and old_index != new_index and tp not in waiting:
                # Moved at once (its old owner held nothing of it): release it now.
                agent.instances[old_index].queue_control(wire.encode_release(tp[1]))
        for move in started:
            self.pause(move.new, [(move.topic_index, move.tp[1])])
            log.info("agent %s: %s[%d] moves from instance %d to %d once %d is done with it",
                     agent.name, move.tp[0], move.tp[1], move.old.index, move.new.index,
                     move.old.index)

    # ------------------------------------------------------------------ revocation

    def release(self, agent: AgentRuntime, revoked: list[tuple[str, int]],
                before: dict[tuple[str, int], int]) -> None:
        """Partitions that left this daemon: their owners close the partitions' table
        shards (another daemon's instance, or this daemon's standby copy, opens them)."""
        for tp in revoked:
            index = before.get(tp)
            if index is not None:
                agent.instances[index].queue_control(wire.encode_release(tp[1]))

    def stop_feeding(self, revoked: set[tuple[str, int]]) -> set[tuple[int, int]]:
        """Revoked partitions get nothing more: moves of them end, and records of them
        not yet in a ring go back to the broker. Their (topic index, partition) keys."""
        self.moves.forget(revoked)
        index = self.fleet.topic_index
        keyed = {(index[t], p) for t, p in revoked if t in index}
        for inst in self.instances:
            inst.pending.drop_partitions(keyed, inst.unacked)
        return keyed

    def forget(self, revoked: set[tuple[str, int]], keyed: set[tuple[int, int]]) -> None:
        """Revoked partitions are no longer ours: drop what instances, the pause set
        and the tracker still know of them (after the final commit)."""
        for tidx, partition in keyed:
            for inst in self.instances:
                inst.forget(tidx, partition)
            self.paused_by.pop((tidx, partition), None)
        for tp in revoked:
            self.tracker.forget(tp)

    # ------------------------------------------------------------------ backpressure

    def pause(self, inst: Instance, tps: Iterable[tuple[int, int]]) -> None:
        """``inst`` cannot take more: pause exactly the partitions feeding it."""
        assert self.consumer is not None
        to_pause = []
        for tp in tps:
            holders = self.paused_by.setdefault(tp, set())
            if not holders:
                to_pause.append(TopicPartition(self.fleet.topics[tp[0]], tp[1]))
            holders.add(inst)
        inst.agent.router.set_blocked(inst.index, True)
        if to_pause:
            self.consumer.pause(to_pause)
            log.debug("%s blocked: paused %s", inst.label, to_pause)

    def resume(self, inst: Instance, tps: Iterable[tuple[int, int]]) -> None:
        assert self.consumer is not None
        to_resume = []
        for tp in tps:
            holders = self.paused_by.get(tp)
            if holders is None:
                continue
            holders.discard(inst)
            if not holders:
                del self.paused_by[tp]
                to_resume.append(TopicPartition(self.fleet.topics[tp[0]], tp[1]))
        inst.agent.router.set_blocked(inst.index, False)
        if to_resume:
            self.consumer.resume(to_resume)
            wake_fetchers(self.consumer, to_resume)
            log.debug("%s drained: resumed %s", inst.label, to_resume)

    def fail_record(self, agent: AgentRuntime, topic: str, encoded: bytes, reason: str) -> None:
        assert self.failures is not None
        self.failures.fail(FailedRecord(agent, topic, encoded, reason))

    def on_consume_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal() or error.code() == KafkaError._FATAL:  # (the code alone is set)
            self.fatal = error
            return
        log.warning("consumer: %s", error)


def wake_fetchers(consumer: Any, tps: list[TopicPartition]) -> None:
    """Seek resumed partitions to the position the consumer already holds, so their
    broker's fetcher starts now.

    Why: librdkafka's ``resume`` does not wake the broker thread that fetches the
    partition. A thread with nothing else to fetch (every partition it leads was
    paused: both instances' backlogs full at once) sleeps until its next periodic
    wake-up, up to a second, while the instances drain their rings and sit idle
    (measured: 0.3 to 0.8 s from resume to the first message, every time, on 2.16;
    10 to 40 ms with the seek). A seek is queued to that thread and wakes it; to the
    position (the offset after the last message consume() returned, so after the
    last one dispatched) it changes nothing else: a paused partition's fetched
    messages were dropped at the pause, and none were consumed since. A partition
    with no position yet (nothing consumed since its assignment) is left as it is;
    a seek that fails (the partition was revoked meanwhile) only loses the wake-up."""
    try:
        positions = consumer.position(tps)
    except KafkaException as exc:
        log.debug("resume: no positions to seek to: %s", exc)
        return
    for tp in positions:
        if tp.error is None and tp.offset >= 0:
            try:
                consumer.seek(tp)
            except KafkaException as exc:
                log.debug("resume: seek %s[%d] to %d: %s", tp.topic, tp.partition,
                          tp.offset, exc)
