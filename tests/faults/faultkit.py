"""The fault harness: a numbered stream in, a forwarding agent, a sink read back, a tally.

Why a numbered stream: Kafka's own system tests count every message through their
"verifiable" producer and consumer; here the producer numbers each input (key
``k<seq % KEYS>``, value ``k..:<seq>:``) and the agent forwards it unchanged to a
one-partition sink topic, so after a fault the sink alone says which sequence numbers
are missing (lost) and which came out more than once (duplicated, the at-least-once
window of the messages in flight at the fault).

Recovery time is the worst end-to-end delay of any message of the run: the producer
stamps each sequence number when it hands it to the client and a watcher stamps it
when it first appears in the sink. Under a steady load that is how long the slowest
message waited for the daemon to ride out the fault. A scenario may report another
figure instead and say so in its note (the broker bounce: from the broker answering
again until the daemon processes again). It is reported, never asserted.

The test's own clients reconnect within half a second (``TEST_RECONNECT``): with
librdkafka's default backoff (up to 10 s after a long outage) the watcher would see a
recovered daemon's output seconds late and charge the daemon for it.

Every scenario appends one :class:`Outcome` to :data:`RESULTS`; the faults conftest
prints them as a table at the end of the run.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kafkatools
from agentdproc import Agentd, wait_until
from agentsrc import agent_module
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

KEYS = 16

#: librdkafka reconnect backoff of the test's producer and watcher (see the module).
TEST_RECONNECT = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


def forward_agent(version: str = "v1") -> str:
    """The agent every scenario runs unless it needs another: every input to the sink.
    ``FORWARD_DELAY`` (seconds per message) makes it lag behind the load, so a fault
    finds many records dispatched but not yet done; ``version`` makes a reload's module
    differ from the last."""
    return agent_module("fault-forward-app", "forward", """
        if DELAY:
            await asyncio.sleep(DELAY)
        yield value
    """, imports=["asyncio"], module=f"""
        VERSION = {version!r}
        DELAY = float(os.environ.get("FORWARD_DELAY", "0"))
    """)


@dataclass
class Outcome:
    """One row of the end-of-run table."""

    scenario: str
    sent: int
    out: int
    lost: int
    dup: int
    recovery_s: float
    note: str = ""


#: Filled by the scenarios, printed by ``pytest_terminal_summary``.
RESULTS: list[Outcome] = []


@dataclass(frozen=True)
class Scale:
    """Loads and durations: small for CI (2 cores, minutes), long with ``--soak``."""

    soak: bool
    rate: float              # numbered messages per second
    kill_for_s: float        # scenario 1: how long to keep killing
    supervisor_kills: int    # scenario 2
    reloads: int             # scenario 4 (two of them broken)
    slow_for_s: float        # scenario 6
    bad_rounds: int          # scenario 7: how many times the bad set is mixed in

    @classmethod
    def of(cls, soak: bool) -> Scale:
        if soak:
            return cls(True, 600.0, 300.0, 5, 60, 60.0, 20)
        return cls(False, 150.0, 30.0, 1, 20, 60.0, 2)


def plain_numbered(seq: int) -> tuple[bytes, bytes]:
    key = f"k{seq % KEYS}"
    return key.encode(), f"{key}:{seq}:".encode()


def seq_of(value: bytes | None) -> int | None:
    """The sequence number a sink value carries, or None for anything else."""
    if not value:
        return None
    parts = value.split(b":")
    if len(parts) < 3 or not parts[0].startswith(b"k"):
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


class NumberedStream(kafkatools.PacedProducer):
    """Produces sequence numbers 0, 1, 2, ... at ``rate`` per second from a thread.

    ``encode(seq) -> (key, value[, headers])`` shapes each message (raw by default, JSON for the
    bad-input scenario); ``extra(seq)`` may return more items to mix in after it (bad
    messages). The producer waits out a broker outage (long ``message.timeout.ms``):
    a message the client gave up on would be "lost" by the test, not by agentd.
    """

    def __init__(self, bootstrap: str, topic: str, *, rate: float,
                 encode: Callable[[int], tuple[Any, ...]] = plain_numbered,
                 extra: Callable[[int], list[tuple[Any, Any, Any]]] | None = None) -> None:
        super().__init__(bootstrap, topic, rate=rate,
                         config={"linger.ms": 5, "acks": "all", "message.timeout.ms": 300_000,
                                 "enable.idempotence": True, **TEST_RECONNECT},
                         name="numbered", pause=0.01, flush_timeout=300)
        self.encode = encode
        self.extra = extra
        self.extras_sent = 0
        self.produced_at: dict[int, float] = {}

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _produce(self, key: Any, value: Any, headers: Any = None) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value, key, headers=headers,
                                       on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.1)

    def _emit(self, seq: int) -> None:
        item = self.encode(seq)
        self.produced_at[seq] = time.monotonic()
        self._produce(*item)
        for item in self.extra(seq) if self.extra else ():
            self._produce(*item)
            self.extras_sent += 1

    def stop(self) -> int:
        """Stop producing and wait for every delivery; how many numbered messages."""
        self._stop.set()
        self._thread.join(320)
        assert not self._thread.is_alive(), "the producer did not finish its deliveries"
        assert not self.errors, f"the test's producer failed: {self.errors[:3]}"
        return self.sent


class SinkWatcher:
    """Stamps the moment each sequence number first shows up in the sink topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.first_seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": bootstrap,
                                   "group.id": kafkatools.unique_name("watch"),
                                   "enable.auto.commit": False, **TEST_RECONNECT})
        self._consumer.assign([TopicPartition(topic, 0, 0)])
        self._thread = threading.Thread(target=self._run, name="sink-watcher", daemon=True)

    def __enter__(self) -> SinkWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.2):
                if msg.error() is None:
                    seq = seq_of(msg.value())
                    if seq is not None and seq not in self.first_seen:
                        self.first_seen[seq] = time.monotonic()


@dataclass
class Tally:
    sent: int
    out: int
    lost: list[int]
    dup: int
    recovery_s: float
    counts: Counter[int] = field(repr=False)


def tally(bootstrap: str, sink: str, stream: NumberedStream,
          watcher: SinkWatcher | None, committed: bool = False) -> Tally:
    """Read the whole sink once the daemon has committed everything and count;
    ``committed``: as a ``read_committed`` reader sees it (exactly once)."""
    counts: Counter[int] = Counter()
    values = (kafkatools.read_committed_values(bootstrap, sink) if committed else
              [record.value for record in kafkatools.read_to_end(bootstrap, sink)])
    for value in values:
        seq = seq_of(value)
        if seq is not None:
            counts[seq] += 1
    lost = sorted(set(range(stream.sent)) - set(counts))
    out = sum(counts.values())
    delays = [watcher.first_seen[s] - stream.produced_at[s] for s in watcher.first_seen
              if s in stream.produced_at] if watcher else []
    return Tally(stream.sent, out, lost, out - len(counts), max(delays, default=0.0), counts)


#: An empty partition, never committed, counts as done: unkeyed test inputs produced in
#: one burst may all land in one partition (librdkafka's sticky partitioner).
committed_equals_end = kafkatools.committed_equals_end


def committed_at_end_yet(bootstrap: str, group: str, topic: str) -> bool:
    """:func:`committed_equals_end` for a wait: a committed-offsets query that timed
    out is "not yet", not a failure. Right after a broker restart the group
    coordinator may still be loading, and under exactly once the broker holds back a
    group's offsets while a transaction that commits them is completing; librdkafka
    retries both until the query's own timeout. The wait's deadline still fails a
    daemon whose commits never arrive."""
    try:
        return committed_equals_end(bootstrap, group, topic)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError._TIMED_OUT:
            return False
        raise


def stall_report(bootstrap: str, group: str, topic: str, daemon: Agentd) -> str:
    """What a run whose commits never reached the end leaves to diagnose it: the ends,
    the group's offsets stable and not (they differ while a transaction holding offsets
    of the group is open on the broker), and the daemon's warnings and errors."""
    lines = [f"end offsets of {topic}: {kafkatools.end_offsets(bootstrap, topic)}"]
    for stable in (False, True):
        try:
            found: Any = kafkatools.committed_offsets(bootstrap, group, topic, 10.0, stable)
        except KafkaException as exc:
            found = exc
        lines.append(f"committed offsets of {group} (stable={stable}): {found}")
    noted = [line for line in daemon.log().splitlines() if " WARNING " in line
             or " ERROR " in line]
    return "\n".join([*lines, "daemon warnings and errors, the last 40:", *noted[-40:]])


class FaultRun:
    """One scenario's topics, group and daemon, plus the closing checks every one makes.

    ``daemon()`` builds the :class:`Agentd` (short commit interval, a short session
    timeout so a restarted supervisor gets its partitions back quickly); ``finish()``
    waits until the group's commits reach the source's end, stops the daemon (exit 0),
    tallies the sink, records the table row and asserts nothing was lost.
    """

    def __init__(self, name: str, bootstrap: str, workdir: Path, *, partitions: int = 4,
                 source: str | None = None, sink: str | None = None) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.workdir = workdir
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40]
        self.source = source or kafkatools.create_topic(
            bootstrap, kafkatools.unique_name(f"fault-{slug}-in"), partitions)
        self.sink = sink or kafkatools.create_topic(
            bootstrap, kafkatools.unique_name(f"fault-{slug}-out"), 1)
        self.group = kafkatools.unique_name(f"fault-{slug}")

    def daemon(self, agents: dict[str, dict[str, Any]], modules: dict[str, str], *,
               app: str, env: dict[str, str] | None = None,
               settings: dict[str, Any] | None = None,
               kafka: dict[str, Any] | None = None) -> Agentd:
        base = {"app": app, "broker": f"kafka://{self.bootstrap}", "group_id": self.group,
                "commit_interval": 0.2, "shutdown_timeout": 30, "log_level": "INFO"}
        return Agentd(self.workdir, {**base, **(settings or {})}, agents=agents,
                      modules=modules, kafka={"session.timeout.ms": 6000, **(kafka or {})},
                      env={"IN_TOPIC": self.source, "SINK_TOPIC": self.sink,
                           "PYTHONDONTWRITEBYTECODE": "1", **(env or {})})

    def forwarder(self, agent: dict[str, Any], *, version: str = "v1",
                  env: dict[str, str] | None = None,
                  settings: dict[str, Any] | None = None,
                  kafka: dict[str, Any] | None = None) -> Agentd:
        return self.daemon({"forward": agent}, {"fault_forward": forward_agent(version)},
                           app="fault_forward:app", env=env, settings=settings, kafka=kafka)

    def settle(self, daemon: Agentd, timeout: float = 180.0,
               topic: str | None = None) -> None:
        """Until every input of ``topic`` (default: the source) is committed."""
        topic = topic or self.source
        try:
            until(daemon, lambda: committed_at_end_yet(self.bootstrap, self.group, topic),
                  timeout, f"{self.name}: commits to reach the end of {topic}", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stall_report(self.bootstrap, self.group, topic, daemon)}"
                                 ) from None

    def finish(self, daemon: Agentd, stream: NumberedStream, watcher: SinkWatcher | None,
               note: str = "", max_dup: int | None = None, committed: bool = False,
               recovery_s: float | None = None) -> Tally:
        """``recovery_s``: the scenario's own recovery figure for the row (its note says
        what it measures) instead of the worst end-to-end delay."""
        self.settle(daemon)
        code = daemon.stop()
        assert code == 0, f"agentd exited {code}:\n{daemon.log()[-3000:]}"
        result = tally(self.bootstrap, self.sink, stream, watcher, committed)
        RESULTS.append(Outcome(self.name, result.sent, result.out, len(result.lost),
                               result.dup, result.recovery_s if recovery_s is None
                               else recovery_s, note))
        assert not result.lost, (f"{self.name}: {len(result.lost)} of {result.sent} inputs "
                                 f"lost, e.g. {result.lost[:10]}")
        if max_dup is not None:
            assert result.dup <= max_dup, \
                f"{self.name}: {result.dup} duplicates, more than the {max_dup} allowed"
        return result


def until(daemon: Agentd, predicate: Callable[[], Any], timeout: float, what: str,
          interval: float = 0.2) -> Any:
    """``wait_until`` that fails at once, with the log, if agentd exits meanwhile."""
    def check() -> Any:
        daemon.assert_running()
        return predicate()
    return wait_until(check, timeout, what, interval)


@contextmanager
def load(run: FaultRun, rate: float, **kwargs: Any) -> Iterator[tuple[NumberedStream,
                                                                      SinkWatcher]]:
    """A numbered stream into the run's source and a watcher on its sink."""
    with SinkWatcher(run.bootstrap, run.sink) as watcher, \
            NumberedStream(run.bootstrap, run.source, rate=rate, **kwargs) as stream:
        yield stream, watcher


def running_for(seconds: float, daemon: Agentd, step: float = 0.5) -> Iterator[float]:
    """Yields the elapsed time every ``step`` s for ``seconds``, failing fast if agentd
    exits: a fault loop's clock."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        daemon.assert_running()
        yield elapsed
        time.sleep(step)


def shm_entries() -> set[str]:
    """The shared-memory objects (files) in ``/dev/shm``: where a leaked ring would be.
    Directories are left out: a benchmark's broker keeps its log dir there."""
    if not os.path.isdir("/dev/shm"):
        return set()
    return {e.name for e in os.scandir("/dev/shm") if not e.is_dir(follow_symlinks=False)}
