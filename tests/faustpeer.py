"""Run a faust-streaming worker (``faust_peer_app``) against the test broker, and kill it.

Faust processes can hang on shutdown (``wait_empty``), so the worker gets SIGTERM, a
few seconds, then SIGKILL, and every wait here has a hard limit. Its log goes to a
file whose tail is shown when something fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TESTS_DIR = Path(__file__).resolve().parent


class FaustWorker:
    """``with FaustWorker(bootstrap, app_id, workdir, adding=topic): ...`` runs one worker.

    Keyword arguments name the topics of the peer's agents (``adding``, ``pow2``,
    ``articles``, ``articles_sink``). Each agent topic is created if missing and the
    worker's group starts at its current end, so messages earlier tests left in a
    shared topic (``adding``) are not answered again.
    """

    def __init__(self, bootstrap: str, app_id: str, workdir: Path, **topics: str) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.workdir = workdir
        self.topics = topics
        self.log_path = workdir / f"faust-worker-{app_id}.log"
        self.env = {**os.environ, "FAUST_PEER_BROKER": f"kafka://{bootstrap}",
                    "FAUST_PEER_APP": app_id,
                    "FAUST_PEER_DATADIR": str(workdir / f"faust-data-{app_id}"),
                    "PYTHONPATH": str(TESTS_DIR)}
        self.env.update({f"FAUST_PEER_{name.upper()}": topic for name, topic in topics.items()})
        self.env.pop("AGENTD_BROKER", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FaustWorker:
        self._start_group_at_end([t for n, t in self.topics.items() if n != "articles_sink"])
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "faust", "-A", "faust_peer_app", "worker", "-l", "info"],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def _start_group_at_end(self, topics: list[str]) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for name, future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).items():
            try:
                future.result(30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"cannot create {name}: {exc}") from exc
        group = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.app_id,
                          "enable.auto.commit": False})
        try:
            ends = []
            for topic in topics:
                meta = group.list_topics(topic, timeout=30).topics[topic]
                for partition in meta.partitions:
                    end = _end_offset(group, TopicPartition(topic, partition))
                    ends.append(TopicPartition(topic, partition, end))
            group.commit(offsets=ends, asynchronous=False)
        finally:
            group.close()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if exc is not None:
            sys.stderr.write(f"--- faust worker log (tail) ---\n{self.log_tail()}\n")


_NO_LEADER_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART}


def _end_offset(client: Consumer, partition: TopicPartition, timeout: float = 30.0) -> int:
    """High watermark, retried while a just-created topic has no leader everywhere yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(client.get_watermark_offsets(partition, timeout)[1])
        except KafkaException as exc:
            if exc.args[0].code() not in _NO_LEADER_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
