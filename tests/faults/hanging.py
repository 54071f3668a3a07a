"""Transactions left hanging in ``__consumer_offsets``, found and aborted the way an
operator does with ``kafka-transactions.sh find-hanging`` / ``abort``.

Kafka 4.4's broker can log a transaction complete while the marker for its offsets
never reaches ``__consumer_offsets`` (docs/decisions.md, "Row 24's cause found"); the
group then waits for those offsets forever, whatever the client. Only Kafka's Admin API
ends it, which confluent-kafka lacks, so ``HangingTransactions.java`` (beside this file)
does it, run as a single-file program with the dev broker's own jars.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kafkatools

from supervisor.devbrokers.devbroker import ensure_jars

__all__ = ["Hanging", "hanging_transactions", "ride_out_lost_markers"]

PROGRAM = Path(__file__).with_name("HangingTransactions.java")


@dataclass(frozen=True)
class Hanging:
    """One hanging transaction on one ``__consumer_offsets`` partition."""

    partition: str
    producer_id: int
    state: str  # what its coordinator says of it (not open: that is why it hangs)
    #: the group offsets it holds pending: (topic, partition) -> offset
    pending: dict[tuple[str, int], int]
    aborted: bool


def hanging_transactions(bootstrap: str, abort: bool = False) -> list[Hanging]:
    """The hanging transactions now, each aborted first when ``abort``."""
    done = subprocess.run(
        ["java", "-cp", f"{ensure_jars() / 'libs'}/*", str(PROGRAM), bootstrap,
         "abort" if abort else "find"], capture_output=True, text=True, timeout=180)
    if done.returncode:
        raise RuntimeError(f"{PROGRAM.name} exited {done.returncode}: {done.stderr[-2000:]}")
    found = []
    for line in done.stdout.splitlines():
        row = json.loads(line)
        pending = {(name.rpartition(":")[0], int(name.rpartition(":")[2])): offset
                   for name, offset in row["pending"].items()}
        found.append(Hanging(row["partition"], row["producer_id"], row["state"], pending,
                             row["aborted"]))
    return found


def ride_out_lost_markers(bootstrap: str, group: str, source: str, daemon: Any,
                          settled: Callable[[], bool], timeout: float = 180.0,
                          check_every: float = 30.0) -> tuple[int, list[Hanging]]:
    """Wait until ``settled()`` (the group's commits at the source's end), for at most
    ``timeout`` s; every ``check_every`` s without it, abort the hanging transactions
    there are, as an operator would. Their offsets are void: the inputs between the
    group's committed offset and the ones they held are processed again, so that many
    duplicates are to be allowed. Returns (that many, what was aborted); the caller's
    own wait fails on a stall that no abort mended."""
    deadline = time.monotonic() + timeout
    allowed, aborted = 0, []
    next_check = time.monotonic() + check_every
    while not settled():
        daemon.assert_running()
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= next_check:
            next_check = now + check_every
            if hanging_transactions(bootstrap):
                before = kafkatools.committed_offsets(bootstrap, group, source, stable=False)
                done = hanging_transactions(bootstrap, abort=True)
                allowed += sum(offset - before.get(partition, 0) for txn in done
                               for (topic, partition), offset in txn.pending.items()
                               if topic == source)
                aborted += done
        time.sleep(0.5)
    return allowed, aborted
