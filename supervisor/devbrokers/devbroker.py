"""A real single-node Apache Kafka broker for development, tests and benchmarks.

Why a real broker: agentd's promises (commit only what was processed, rebalances,
broker bounces) can only be proven against Kafka itself, and Docker is not assumed.
So the broker is Apache Kafka 4.x from Maven Central, resolved once by ``mvn`` from
the pom shipped in this package (``supervisor/devbrokers/kafka/pom.xml``) into a jar cache, then
run as a KRaft combined broker+controller JVM on free loopback ports.

``DevBroker`` is the API tests and benches use; ``agentd dev-broker`` wraps it
(``supervisor/devbrokers/serve.py``).
The JVM is started with ``PR_SET_PDEATHSIG`` so it dies with the Python process
that started it: a killed test run leaves no java behind. (The kernel ties that signal
to the starting *thread*: start a DevBroker from a thread that outlives it.)
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confluent_kafka import Consumer

__all__ = ["DevBroker", "DevBrokerError", "ToolMissing", "UsageProblem", "create_topics",
           "ensure_jars", "kafka_version"]

_POM_NS = "{http://maven.apache.org/POM/4.0.0}"
_COMPLETE_MARK = ".complete"
_PR_SET_PDEATHSIG = 1


class DevBrokerError(RuntimeError):
    """The broker could not be fetched, formatted or started; the message says why."""


class ToolMissing(DevBrokerError):
    """``java`` or ``mvn`` is not on PATH (the CLI exits 2 for this one)."""


class UsageProblem(DevBrokerError):
    """Options that cannot go together (the CLI reports it as a usage error)."""


def _resource(name: str) -> bytes:
    return (importlib.resources.files("supervisor.devbrokers") / "kafka" / name).read_bytes()


def kafka_version() -> str:
    """The Kafka version pinned in the shipped pom (the single place it is written)."""
    root = ET.fromstring(_resource("pom.xml"))
    version = root.findtext(f"{_POM_NS}properties/{_POM_NS}kafka.version")
    if not version:
        raise DevBrokerError("supervisor/devbrokers/kafka/pom.xml has no <kafka.version> property")
    return version.strip()


def cache_root() -> Path:
    """``$AGENTD_CACHE`` or ``~/.cache/agentd``: where fetched jar sets live."""
    env = os.environ.get("AGENTD_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "agentd"


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(f"{tool} not found on PATH; {why}")
    return path


def ensure_jars(cache: Path | None = None) -> Path:
    """Return a directory holding the broker's jars, fetching them with Maven once.

    Several test sessions may race on a cold cache, so the fetch holds an exclusive
    file lock and writes into a temp dir that is renamed into place only when Maven
    succeeded: a reader sees either no directory or a complete one.
    """
    root = cache if cache is not None else cache_root()
    target = root / f"kafka-{kafka_version()}"
    if (target / _COMPLETE_MARK).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _COMPLETE_MARK).exists():  # another process fetched it meanwhile
            return target
        mvn = _require("mvn", f"Maven is needed once to fetch the Kafka jars into {target}")
        for stale in root.glob(f".{target.name}-*"):  # left by a fetch that was killed
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        try:
            pom = staging / "pom.xml"
            pom.write_bytes(_resource("pom.xml"))
            cmd = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                   "-DincludeScope=runtime", f"-DoutputDirectory={staging / 'libs'}"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not any((staging / "libs").glob("kafka_2.13-*.jar")):
                tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
                raise DevBrokerError(f"mvn could not fetch Kafka jars: {' | '.join(tail)}")
            (staging / _COMPLETE_MARK).touch()
            if target.exists():  # a half-made dir from an older, non-atomic layout
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: ask the kernel to SIGKILL this child when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _cluster_id() -> str:
    # Kafka's Uuid.randomUuid: base64url, no padding, never starting with "-".
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def server_properties(*, port: int, controller_port: int, log_dir: Path,
                      partitions: int) -> str:
    """KRaft combined node, static quorum (layout A), every replication factor 1."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(partitions),
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class DevBroker:
    """One Kafka broker JVM; ``with DevBroker() as broker: broker.bootstrap``.

    ``data_dir`` keeps the log across restarts (formatted only the first time, never
    deleted), so a test can stop a broker and start another on the same dir and port.
    Without it the log lives in the temp dir, which ``stop()`` removes.
    """

    def __init__(self, *, partitions: int = 8, port: int | None = None,
                 data_dir: str | os.PathLike[str] | None = None, heap: str = "512m",
                 startup_timeout: float = 180.0, cache: Path | None = None) -> None:
        self.partitions = partitions
        self.port = port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.cache = cache
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, valid once ``start()`` returned."""
        if self.process is None or self.port is None:
            raise DevBrokerError("the broker is not running; call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        """The JVM's console output (WARN and above), for diagnosing a failed start."""
        return self.workdir / "broker.log" if self.workdir else None

    def start(self) -> str:
        """Fetch jars if needed, format the log dir if new, start the JVM, wait for metadata."""
        if self.process is not None:
            return self.bootstrap
        java = _require("java", "install a Java 17+ runtime (e.g. apt install openjdk-17-jre)")
        libs = ensure_jars(self.cache) / "libs"
        if self.port is None:
            self.port = free_port()
        elif _port_open(self.port):
            raise DevBrokerError(f"port {self.port} on 127.0.0.1 is already in use")
        self.workdir = Path(tempfile.mkdtemp(prefix="agentd-kafka-"))
        try:
            self._launch(java, libs)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def _launch(self, java: str, libs: Path) -> None:
        assert self.workdir is not None and self.port is not None
        log_dir = self.data_dir if self.data_dir is not None else self.workdir / "data"
        log_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "server.properties"
        config.write_text(server_properties(port=self.port, controller_port=free_port(),
                                            log_dir=log_dir.resolve(),
                                            partitions=self.partitions))
        log4j = self.workdir / "log4j2.properties"
        log4j.write_bytes(_resource("log4j2.properties"))
        common = [f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true",
                  "-cp", f"{libs}/*"]
        if not (log_dir / "meta.properties").exists():
            self._format([java, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", *common], config)
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [java, f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", *common,
                 "kafka.Kafka", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=self._preexec())
        self._wait_ready()

    @staticmethod
    def _preexec() -> Callable[[], None]:
        parent = os.getpid()
        return lambda: _die_with_parent(parent)

    def _format(self, java_cmd: list[str], config: Path) -> None:
        cmd = [*java_cmd, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}",
               "-c", str(config)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              preexec_fn=self._preexec())
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise DevBrokerError(f"formatting the Kafka log dir failed: {' | '.join(tail)}")

    def _wait_ready(self) -> None:
        """Poll until the PLAINTEXT port accepts and a Metadata request is answered.

        Kafka opens the client port only once the broker is unfenced and serving, so
        connecting first keeps librdkafka's connection-refused noise out of the logs.
        """
        from confluent_kafka.admin import AdminClient

        assert self.process is not None and self.port is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevBrokerError(f"Kafka exited with status {self.process.returncode} "
                                     f"while starting: {self._log_tail()}")
            if _port_open(self.port):
                admin = AdminClient({"bootstrap.servers": self.bootstrap})
                with contextlib.suppress(Exception):
                    admin.list_topics(timeout=5)
                    return
            time.sleep(0.1)
        raise DevBrokerError(f"Kafka did not answer metadata within {self.startup_timeout:.0f} s: "
                             f"{self._log_tail()}")

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no broker log)"
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or f"(empty log {self.log_path})"

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the JVM (clean shutdown), SIGKILL it after ``grace``; remove the temp dir.

        ``data_dir`` is never removed. Safe to call twice.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs (tests check that it is gone after stop)."""
        return self.process.pid if self.process is not None else None

    def __enter__(self) -> DevBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()



def create_topics(bootstrap: str, topics: dict[str, int], timeout: float = 60.0) -> None:
    """Create ``{name: partitions}`` (replication 1); return once every partition serves.

    CreateTopics answers when the controller has recorded the topic; the broker starts
    serving its partitions a moment later, and a ListOffsets sent in that gap fails.
    Waiting here lets callers query offsets at once. A topic that already exists (a
    kept ``--data-dir``) is not an error.
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, n, 1) for name, n in topics.items()],
                                  operation_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise DevBrokerError(f"cannot create topic {name!r}: {exc.args[0].str()}") from None
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "agentd-topic-probe",
                      "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        for name in topics:
            _wait_until_served(probe, name, deadline)
    finally:
        probe.close()


def _wait_until_served(probe: Consumer, topic: str, deadline: float) -> None:
    from confluent_kafka import KafkaException, TopicPartition

    while True:
        try:
            meta = probe.list_topics(topic, timeout=5).topics[topic]
            if meta.error is None and meta.partitions:
                for partition in meta.partitions:
                    probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                return
            problem = str(meta.error or "no partitions yet")
        except KafkaException as exc:
            problem = str(exc)
        if time.monotonic() > deadline:
            raise DevBrokerError(f"topic {topic!r} was created but is not served: {problem}")
        time.sleep(0.05)
