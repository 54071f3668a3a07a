"""Reproduce, without agentd, a transaction marker a stopping Kafka broker never writes.

Two transactional producers commit offsets of one group in a loop (each transaction:
one record, the group's offset for its partition, commit), on a single ``agentd
dev-broker``; after a few seconds the broker is stopped (``--mode stop``: SIGINT, its
controlled shutdown) or killed (``--mode kill``: SIGKILL to its JVM), restarted on the
same data dir, and given longer than the transaction timeout. Then the group's
committed offsets are read twice: stable (``read_committed``, KIP-447: waits for every
transaction that wrote offsets of the group) and not. A stable read that never
answers while the other does is a transaction left hanging in ``__consumer_offsets``:
for its coordinator it is over, for the group coordinator it is open, and only an
admin abort ends it (docs/decisions.md, "Row 24's cause found").

Run from a checkout (it uses ``tests/kafkatools.py``):

    .venv/bin/python contrib/kafka-lost-marker/repro.py --mode stop --rounds 10

2026-12-07, Kafka 4.4.0: ``stop`` left one hanging in 1 of 10 rounds. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import kafkatools

from supervisor.devbrokers.devbroker import free_port

TRANSACTION_TIMEOUT_MS = 15000
QUIET = {"log_level": 0}  # the clients' reconnect lines while the broker is away


def commit_loop(bootstrap: str, group: str, topic: str, partition: int, stop: threading.Event,
                keep: list[Any]) -> None:
    """Transactions of one record and the group's offset for ``partition``, until the
    broker goes (the clients are left open: closing them without a broker can block)."""
    producer = Producer({"bootstrap.servers": bootstrap, **QUIET,
                         "transactional.id": f"{group}-{partition}",
                         "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **QUIET})
    keep.append((producer, consumer))
    metadata = consumer.consumer_group_metadata()
    producer.init_transactions(10)
    offset = 0
    try:
        while not stop.is_set():
            producer.begin_transaction()
            producer.produce(f"{topic}-out", b"x", partition=0)
            offset += 1
            producer.send_offsets_to_transaction([TopicPartition(topic, partition, offset)],
                                                 metadata, 10)
            producer.commit_transaction(10)
    except Exception:
        pass  # the broker went away mid-transaction: what this is about


def end_broker(proc: Any, mode: str) -> None:
    if mode == "kill":
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
    else:
        proc.send_signal(signal.SIGINT)
    proc.wait(60)


def one_round(workdir: Path, number: int, mode: str) -> bool:
    """True when the round left a hanging transaction."""
    data, port = workdir / f"data-{mode}-{number}", free_port()
    broker, bootstrap = kafkatools.spawn_dev_broker("--data-dir", str(data), "--port", str(port))
    topic, group = f"in{number}", f"g{number}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 2, 1),
                                       NewTopic(f"{topic}-out", 1, 1)]).values():
        future.result(30)
    stop, keep = threading.Event(), list[Any]()
    loops = [threading.Thread(target=commit_loop, args=(bootstrap, group, topic, p, stop, keep),
                              daemon=True) for p in range(2)]
    for loop in loops:
        loop.start()
    time.sleep(3 + (number % 5) * 0.37)  # a different moment of a commit each round
    end_broker(broker, mode)
    stop.set()
    broker, bootstrap = kafkatools.spawn_dev_broker("--data-dir", str(data), "--port", str(port))
    try:
        time.sleep(TRANSACTION_TIMEOUT_MS / 1000 + 10)  # any open transaction is over
        loose = kafkatools.committed_offsets(bootstrap, group, topic, stable=False)
        try:
            stable: Any = kafkatools.committed_offsets(bootstrap, group, topic)
        except Exception as exc:  # the stable read never answers
            stable = str(exc)
        print(f"round {number} ({mode}): stable {stable}, not stable {loose}", flush=True)
        return bool(stable != loose)
    finally:
        end_broker(broker, "stop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["stop", "kill"], default="stop")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/agentd-lost-marker"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    hanging = sum(one_round(args.workdir, n, args.mode) for n in range(args.rounds))
    print(json.dumps({"repro": "kafka-lost-marker", "mode": args.mode,
                      "rounds": args.rounds, "hanging": hanging}))


if __name__ == "__main__":
    main()
