"""An instance's tables: the agentd table runtime installed, shards opened per partition.

The worker asks this module five things: open the shards of a partition before the
agent sees a record of it (a shard catches up with its changelog on opening), close
them when the partition leaves (a ``RELEASE`` from the daemon: the next owner is
waiting for RocksDB's lock), report its shards to the daemon (a ``TABLES`` record with
each ``PONG``, and from inside a changelog replay, which keeps the loop from answering
``PING``), flush the write-back window before a transaction commits, and close
everything at exit. Tables live in agentlib
(:mod:`agentlib.tables`); this is only the instance's side of owning them.

Opening runs on the worker's loop, so a partition's first record waits for its catch-up
(and for a previous owner's lock), and so do the other partitions of this instance.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.transport import wire

__all__ = ["EXIT_TABLE_FAILED", "InstanceTables"]

EXIT_TABLE_FAILED = 4

log = logging.getLogger("agentd.worker")


class InstanceTables:
    """The table runtime of one instance process, and which tables its agent uses."""

    def __init__(self, runtime: Any, used: list[Any],
                 send: Callable[[bytes], None] | None = None,
                 producer: Any = None) -> None:
        self.runtime = runtime
        #: The changelog producer (its own, with ``CHANGELOG_LINGER_MS``), closed here;
        #: None under exactly once (the app's transactional producer writes them).
        self.producer = producer
        self.used = [table for table in used if not table.is_global]
        self._send = send
        runtime.on_progress = self.report

    @classmethod
    def install(cls, agent: Any, table_dir: str,
                send: Callable[[bytes], None] | None = None, *,
                exactly_once: bool = False,
                max_in_flight: int = 4096) -> InstanceTables | None:
        """Install the changelog runtime if the agent's app has tables (else None);
        ``send`` writes a record to the daemon (status reports). Under
        ``exactly_once`` the changelog writes go through the app's producer, which
        :class:`~supervisor.instance.transactions.Transactions` makes transactional:
        they commit with the outputs and offsets of the records that made them.

        The write-back window flushes at half of ``max_in_flight`` records: its records
        stay in flight until the flush is delivered, so a window as large as the bound
        would flush only once the instance could take no more records, and the agent
        would wait out every flush's delivery; with half, the other half keeps the
        agent fed while a flush is on its way (``docs/tables.md``, flush windows)."""
        app = getattr(agent, "app", None)
        if not getattr(app, "tables", None):
            return None
        changelog = importlib.import_module("agentlib.tables.changelog")
        runtimes = importlib.import_module("agentlib.tables.runtime")
        usage = importlib.import_module("agentlib.tables.usage")
        kafka = importlib.import_module("agentlib.kafka")
        assert app is not None
        settings = {"bootstrap.servers": kafka.bootstrap_servers(app.conf.broker),
                    **kafka.client_settings()}
        # At least once, changelog writes get a producer of their own that lingers a
        # few ms: batches instead of one produce request per write. The app's producer
        # (replies, sinks) keeps linger.ms 0, so an ask's answer is not held back for a
        # batch. (The transactional producer lingers anyway.)
        producer = None if exactly_once else kafka.KafkaProducer(
            app.conf.broker, config={"linger.ms": kafka.CHANGELOG_LINGER_MS})
        runtime = changelog.ChangelogRuntime(
            Path(table_dir) / app.id, consumer_settings=settings,
            producer=(lambda: app.producer) if producer is None else (lambda: producer),
            flush_records=max(1, max_in_flight // 2))
        runtimes.install(runtime)
        return cls(runtime, usage.tables_used_by(getattr(agent, "fun", None)), send,
                   producer)

    def report(self) -> None:
        """Send the daemon a ``TABLES`` record: every shard this instance holds."""
        if self._send is not None:
            self._send(wire.encode_tables([wire.TableRow._make(row)
                                           for row in self.runtime.status()]))

    def open_partition(self, partition: int) -> None:
        """Open (and catch up) the shards of ``partition`` for the agent's tables.

        A shard that cannot open (its changelog unreachable, its lock never released)
        ends the instance: its records must not be processed without their rows, and
        an exception here, raised in the loop's reader callback, would only be logged
        while the instance sat stalled. The daemon restarts it (with backoff) and
        re-dispatches what it held."""
        self.runtime.claim(partition)
        for table in self.used:
            try:
                self.runtime.shard(table, partition)
            except Exception as exc:
                log.critical("table %s[%d] cannot open: %s: %s; this instance stops",
                             table.name, partition, type(exc).__name__, exc)
                logging.shutdown()
                os._exit(EXIT_TABLE_FAILED)

    def flush(self) -> None:
        """Flush the write-back window now (before a transaction commits)."""
        self.runtime.flush()

    def release(self, partition: int) -> None:
        """Close the shards of ``partition``: it moved to another instance."""
        self.runtime.release(partition)

    def close(self) -> None:
        """Close every shard and the changelog producer (the process is exiting).

        The agent's records are done by now, so their changelog writes are delivered;
        the producer's flush only waits for writes of records that were not."""
        try:
            self.runtime.close()
        except Exception as exc:  # exiting anyway; RocksDB's WAL keeps what was written
            log.warning("closing table shards failed: %s", exc)
        if self.producer is not None:
            self.producer.close(5.0)
