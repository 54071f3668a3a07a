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
from dataclasses import dataclass
from pathlib import Path

from supervisor.devbrokers.devbroker import ensure_jars

__all__ = ["Hanging", "hanging_transactions"]

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
