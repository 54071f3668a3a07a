"""What every bench script shares: the broker, the data, the contestant harness, the output.

One benchmark run = one real Kafka broker (``supervisor.devbrokers.devbroker.DevBroker``) started by
the script, topics pre-produced once, then contestants run one after another, each in
its own child process with a hard timeout. A contestant reports its own timestamps as
one JSON line on stdout (``{"result": {...}}``, written with :func:`report`); the parent
turns them into msg/s. A contestant that hangs, crashes or prints no result scores 0 and
carries the reason, so one broken peer never stops the run.

The peers (Quix Streams, arroyo) pin confluent-kafka releases of their own, so each runs
in its own virtualenv under ``bench/.peers-venv/``, created on first use and cached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PEERS_VENV = BENCH_DIR / ".peers-venv"
# The peers' own pins decide confluent-kafka inside their venvs; agentd's stays untouched.
PEER_PACKAGES = {"quix": ("quixstreams==3.28.*",), "arroyo": ("sentry-arroyo==2.48.*",)}
AGENTD = [sys.executable, str(REPO / "bin" / "agentd")]
KEY_SPACE = 1000


# ---------------------------------------------------------------------------- output

def log(message: str) -> None:
    """Progress goes to stderr so stdout keeps the table and the final JSON line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    """The options every script has: ``--quick`` and a contestant timeout."""
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--quick", action="store_true", help="small run (each script < 3 min)")
    cli.add_argument("--timeout", type=float, default=None,
                     help="seconds before a contestant counts as hung")
    cli.add_argument("--bootstrap", default=os.environ.get("BENCH_BOOTSTRAP"),
                     help="use this running broker instead of starting one")
    return cli


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (readable on a terminal, pasteable into a report)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` rounded; 0 when either side did not run."""
    return round(numerator / denominator, 2) if numerator > 0 and denominator > 0 else 0.0


def emit_json(summary: dict[str, Any]) -> None:
    """The last line of every script: one JSON object."""
    print(json.dumps(summary, sort_keys=False), flush=True)


# ---------------------------------------------------------------------------- broker

#: Where the benches' broker keeps its log: tmpfs when the machine has one. Every run
#: makes fresh topics, and the first offset-index entry of a fresh partition (after
#: ``log.index.interval.bytes``, 4 KiB of records) writes the first page of its
#: sparse, memory-mapped index file; on this machine's ext4 that page fault stalled
#: the partition ~34 ms. One stall per partition per topic is start-up the runtimes
#: never pay on a broker that has been up for a while, but it made 7 of every 500
#: sequential asks, around the 370th, 7-35 ms slow in every row: the quick ask run's
#: p99. On tmpfs it is gone. The broker is the same Kafka; only its disk is not.
SHM = Path("/dev/shm")
LOG_DIR_PARENT = SHM


@contextlib.contextmanager
def broker(bootstrap: str | None = None, partitions: int = 8) -> Iterator[str]:
    """Yield a bootstrap address: the one given, or a DevBroker started (and stopped)
    here, its log on tmpfs where there is one (:data:`LOG_DIR_PARENT`)."""
    if bootstrap:
        yield bootstrap
        return
    from supervisor.devbrokers.devbroker import DevBroker

    started = time.monotonic()
    log_dir = None
    if LOG_DIR_PARENT.is_dir() and os.access(LOG_DIR_PARENT, os.W_OK):
        log_dir = Path(tempfile.mkdtemp(prefix="agentd-bench-kafka-", dir=LOG_DIR_PARENT))
    dev = DevBroker(partitions=partitions, data_dir=log_dir)
    try:
        dev.start()
        log(f"Kafka up at {dev.bootstrap} in {time.monotonic() - started:.1f} s"
            + (f", log in {log_dir}" if log_dir else ""))
        yield dev.bootstrap
    finally:
        dev.stop()
        if log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int = 8,
                 config: dict[str, str] | None = None) -> str:
    """Create ``name`` (``config``: topic settings, e.g. ``cleanup.policy``)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, partitions, 1, config=config or {})
    admin.create_topics([topic], operation_timeout=30)[name].result(30)
    return name


def json_value(i: int, rng: random.Random) -> bytes:
    """A JSON object of about 120 bytes, shaped like a small business event."""
    return json.dumps({"id": i, "account": f"acct-{rng.randrange(100_000):05d}",
                       "amount": round(rng.uniform(1, 10_000), 2), "currency": "EUR",
                       "kind": rng.choice(("deposit", "withdrawal", "transfer")),
                       "ts": 1_764_000_000_000 + i}, separators=(",", ":")).encode()


def produce(bootstrap: str, topic: str, count: int,
            value: Any = json_value, keys: int = KEY_SPACE) -> float:
    """Produce ``count`` messages keyed over ``keys`` values; wait for all; return seconds."""
    rng = random.Random(12)
    return produce_rows(bootstrap, topic, ((key_of(i, keys), value(i, rng), None, None)
                                           for i in range(count)))


def key_of(i: int, keys: int = KEY_SPACE) -> bytes:
    """The key of the ``i``-th message :func:`produce` writes (``keys`` values in turn)."""
    return b"k%d" % (i % keys)


#: One record for :func:`produce_rows`: key, value, partition (None: by key), headers.
Row = tuple[bytes | None, bytes | None, int | None, list[tuple[str, bytes]] | None]


def produce_rows(bootstrap: str, topic: str, rows: Iterable[Row]) -> float:
    """Produce ``rows``; wait until all are delivered; return seconds."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": 1,
                         "compression.type": "none", "batch.size": 1_000_000,
                         "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 1_048_576})
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    started = time.monotonic()
    for i, (key, payload, partition, headers) in enumerate(rows):
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        if headers:
            extra["headers"] = headers
        while True:
            try:
                producer.produce(topic, payload, key, on_delivery=on_delivery, **extra)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 20_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        raise KafkaException(f"{left} undelivered, errors: {errors[:3]}")
    return time.monotonic() - started


class OffsetWatch:
    """Reads a group's committed offsets on a topic, without joining the group."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                   "enable.auto.commit": False})
        self._parts = [TopicPartition(topic, p) for p in range(partitions)]
        self._last = 0

    def committed_total(self) -> int:
        """Messages below the committed offsets (partitions never committed count 0).

        A coordinator that is not there yet (a fresh broker creates ``__consumer_offsets``
        on the first group's first request: NOT_COORDINATOR for a moment) answers the
        last total seen; the caller polls again."""
        from confluent_kafka import KafkaError, KafkaException

        try:
            parts = self._consumer.committed(self._parts, timeout=10)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and (error.retriable() or error.code() in (
                    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                    KafkaError.COORDINATOR_NOT_AVAILABLE)):
                return self._last
            raise
        self._last = sum(tp.offset for tp in parts if tp.offset >= 0)
        return self._last

    def close(self) -> None:
        self._consumer.close()


# ---------------------------------------------------------------------------- contestants

@dataclass
class Outcome:
    """One contestant's run: its rate, or 0 and why not."""

    name: str
    msg_s: float = 0.0
    count: int = 0
    seconds: float = 0.0
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> list[object]:
        return [self.name, self.msg_s, self.count, round(self.seconds, 2), self.reason or "ok"]


def report(first: float, last: float, count: int, **extra: Any) -> None:
    """Child side: print the result line the parent looks for (wall-clock seconds)."""
    line = json.dumps({"result": {"first": first, "last": last, "count": count, **extra}})
    # Straight to fd 1: Faust's worker replaces sys.stdout with a logging proxy.
    os.write(1, ("\n" + line + "\n").encode())


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50/p99/p999 in ms of latencies in seconds (the ordered sample at each rank)."""
    ordered = sorted(latencies)
    n = len(ordered)
    return {f"p{label}": round(ordered[min(n - 1, int(q * n))] * 1000, 3)
            for label, q in (("50", 0.50), ("99", 0.99), ("999", 0.999))}


def _last_result(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        start = line.find('{"result"')  # a library may have left escape codes before it
        if start >= 0:
            with contextlib.suppress(ValueError):
                result = json.loads(line[start:])["result"]
                return result if isinstance(result, dict) else None
    return None


def run_child(name: str, argv: Sequence[str], timeout: float, *,
              env: dict[str, str] | None = None, expect: int | None = None) -> Outcome:
    """Run one contestant in its own process group; kill the group on timeout.

    Output goes to files, not pipes: a contestant's helpers (arroyo's pool) inherit
    stdout and may outlive it, and a pipe would then never reach EOF. Once the
    contestant exits, whatever is left of its group is killed.

    The rate is ``(count - 1) / (last - first)``: from the first processed message to
    the N-th, so start-up, group join and shutdown are outside the measured window.
    """
    scratch = tempfile.mkdtemp(prefix="bench-child-")  # the child's TMPDIR, removed after
    full_env = {**os.environ, "TMPDIR": scratch, **(env or {})}
    ipc_before = _multiprocessing_ipc()
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, text=True, env=full_env,
                                start_new_session=True, cwd=REPO)
        try:
            proc.wait(timeout)
            hung = False
        except subprocess.TimeoutExpired:
            hung = True
        finally:
            kill_group(proc)
            shutil.rmtree(scratch, ignore_errors=True)
            for leftover in _multiprocessing_ipc() - ipc_before:
                leftover.unlink(missing_ok=True)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result = _last_result(stdout)
    if hung:
        outcome = Outcome(name, reason=f"hung: no result within {timeout:.0f} s")
        if result is not None:
            outcome.count = int(result.get("count", 0))
        tail = " | ".join(stderr.strip().splitlines()[-2:])[-200:]
        if tail:
            outcome.extra["stderr_tail"] = tail
        log(f"{name}: {outcome.reason}")
        return outcome
    if result is None:
        tail = " | ".join(stderr.strip().splitlines()[-3:])[-300:]
        return Outcome(name, reason=f"exit {proc.returncode}, no result: {tail}")
    outcome = from_result(name, result, expect)
    log(f"{name}: {outcome.msg_s:,.0f} msg/s ({time.monotonic() - started:.0f} s with start-up)"
        + (f" [{outcome.reason}]" if outcome.reason else ""))
    return outcome


def _multiprocessing_ipc() -> set[Path]:
    """Python multiprocessing's POSIX shared memory blocks and semaphores in /dev/shm.

    A contestant leaves with ``os._exit`` or is killed, so its pool never unlinks
    them: arroyo's 2-process strategy left 64 MiB of ``psm_*`` blocks and six
    ``sem.mp-*`` semaphores per run, until tmpfs filled. Those the child made are
    removed once its group is dead (one contestant runs at a time).
    """
    if not SHM.is_dir():
        return set()
    return {*SHM.glob("psm_*"), *SHM.glob("sem.mp-*")}


def from_result(name: str, result: dict[str, Any], expect: int | None) -> Outcome:
    first, last, count = float(result["first"]), float(result["last"]), int(result["count"])
    extra = {k: v for k, v in result.items() if k not in ("first", "last", "count")}
    if count < 2 or last <= first:
        return Outcome(name, count=count, reason="too few messages to time", extra=extra)
    if expect is not None and count < expect:
        return Outcome(name, count=count, reason=f"processed {count} of {expect}", extra=extra)
    seconds = last - first
    return Outcome(name, msg_s=round((count - 1) / seconds), count=count, seconds=seconds,
                   extra=extra)


def kill_group(proc: subprocess.Popen[Any], grace: float = 3.0, *,
               term_group: bool = True) -> None:
    """SIGTERM the child (its whole process group unless ``term_group`` is False: a
    daemon drains its own children), SIGKILL the group after ``grace``; never raises."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if term_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # grandchildren (pools, workers) too
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


PEER_OF = {"quix": "quix", "quix_state": "quix", "quix_eos": "quix", "arroyo_mp": "arroyo",
           "arroyo_single": "arroyo"}


def run_contestant(name: str, bootstrap: str, topic: str, count: int, timeout: float, *,
                   kind: str | None = None, work: int = 0, instances: int = 1,
                   concurrency: int = 1, options: Sequence[str] = ()) -> Outcome:
    """Contestant ``name`` reads all of ``topic`` in a fresh consumer group.

    ``kind`` (default: ``name``) is ``agentd`` (run with ``instances``) or a
    ``_contestants.py`` kind (``bare``, ``faust``, ``quix``, ``arroyo_mp``,
    ``arroyo_single``, ``faust_table``, ``quix_state``, ``quix_eos``); ``work`` is
    ``burn`` iterations per message, the same for all; ``options``: more arguments for
    ``_contestants.py``.
    """
    kind = kind or name
    if kind == "agentd":
        return run_agentd(name, bootstrap, topic, count, instances, timeout, work=work)
    if kind in PEER_OF:
        try:
            python = str(peers_python(PEER_OF[kind]))
        except Exception as exc:  # no venv, no contestant: the run goes on
            return Outcome(name, reason=f"peers venv failed: {exc}")
    else:
        python = sys.executable
    argv = [python, str(BENCH_DIR / "_contestants.py"), kind, "--bootstrap", bootstrap,
            "--topic", topic, "--group", unique(f"bench-{kind}"), "--count", str(count),
            "--concurrency", str(concurrency), *options]
    return run_child(name, argv, timeout, env={"BENCH_WORK": str(work)}, expect=count)


# ---------------------------------------------------------------------------- peers venvs

def peers_python(peer: str) -> Path:
    """The interpreter of ``peer``'s venv (``quix`` or ``arroyo``), created once and cached.

    One venv per peer: quixstreams 3.28 pins confluent-kafka < 2.13 while sentry-arroyo
    2.48 requires >= 2.13.2, so the two cannot share one (and agentd's stays untouched).
    """
    venv = PEERS_VENV / peer
    python = venv / "bin" / "python"
    stamp = venv / ".complete"
    wanted = "\n".join(PEER_PACKAGES[peer])
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"creating {venv} ({', '.join(PEER_PACKAGES[peer])}); cached for later runs")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *PEER_PACKAGES[peer]], check=True)
    stamp.write_text(wanted)
    return python


def peer_versions() -> dict[str, str]:
    """Versions inside the peers' venvs (for the report's machine facts)."""
    versions: dict[str, str] = {}
    for peer, packages in PEER_PACKAGES.items():
        names = [p.split("=")[0] for p in packages] + ["confluent-kafka"]
        code = ("import importlib.metadata as m, json, sys; "
                "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))")
        try:
            done = subprocess.run([str(peers_python(peer)), "-c", code, *names],
                                  capture_output=True, text=True, check=False)
        except (OSError, subprocess.CalledProcessError):
            continue
        if done.returncode == 0:
            for name, version in json.loads(done.stdout).items():
                versions[f"{name} ({peer} venv)" if name == "confluent-kafka" else name] = version
    return versions


def machine_facts() -> dict[str, Any]:
    """Cores, CPU model, Python and library versions: what a reader needs to compare runs."""
    import importlib.metadata as md

    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    facts: dict[str, Any] = {"cores": os.cpu_count(), "cpu": model,
                             "python": platform.python_version(), "kernel": platform.release()}
    for package in ("agentd", "confluent-kafka", "faust-streaming", "uvloop"):
        with contextlib.suppress(md.PackageNotFoundError):
            facts[package] = md.version(package)
    with contextlib.suppress(ImportError):
        from supervisor.devbrokers.devbroker import kafka_version

        facts["kafka"] = kafka_version()
    return facts


# ---------------------------------------------------------------------------- CPU work

def burn(iterations: int) -> int:
    """Pure-Python work that holds the GIL (the CPU-bound agent's body)."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def iterations_for(micros: float) -> int:
    """How many ``burn`` iterations take ``micros`` µs here (best of five, so noise
    from other processes makes the work smaller rather than larger)."""
    probe = 20_000
    best = min(_timed_burn(probe) for _ in range(5))
    return max(1, round(probe * micros / (best * 1e6)))


def _timed_burn(iterations: int) -> float:
    started = time.perf_counter()
    burn(iterations)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- agentd

def agentd_command(tree: Path = REPO) -> list[str]:
    """How to run ``tree``'s ``bin/agentd`` (:data:`AGENTD` for this checkout): the
    script puts its own tree first on ``sys.path``, so the daemon runs that tree's code."""
    return [sys.executable, str(Path(tree) / "bin" / "agentd")]


def pythonpath(tree: Path = REPO) -> str:
    """``bench/`` first (the bench apps), then ``tree`` (default: this checkout; so the
    daemon's zygote and instances run that tree's code, not whichever checkout is
    pip-installed), then whatever PYTHONPATH already holds."""
    return os.pathsep.join(filter(None, [str(BENCH_DIR), str(tree),
                                         os.environ.get("PYTHONPATH")]))


def agentd_missing(tree: Path = REPO) -> str:
    """Why ``tree``'s ``agentd start`` cannot run here ("" when it can)."""
    done = subprocess.run([*agentd_command(tree), "start", "--help"], capture_output=True,
                          text=True, check=False, cwd=tree)
    if done.returncode != 0:
        return "not available: `agentd start` does not exist yet"
    return ""


class Agentd:
    """``agentd start CONFIG`` running ``_agentd_app`` in its own process group.

    ``settings`` become top-level config keys; ``env`` reaches the app (its topic,
    instance count, work, mark dir). Use as a context manager: the daemon gets SIGTERM
    (drain) on exit, and its whole group SIGKILL if it has not left after a grace.
    ``tree``: the source tree whose ``bin/agentd`` runs, its code first on PYTHONPATH
    after ``bench/`` (default: this checkout; ``bench/trees.py`` runs two).
    """

    def __init__(self, bootstrap: str, group: str, env: dict[str, str],
                 settings: dict[str, Any] | None = None, tree: Path = REPO) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-agentd-"))
        self.config = self.workdir / "agentd.toml"
        self.log_path = self.workdir / "agentd.log"
        self.group = group
        values: dict[str, Any] = {"app": "_agentd_app:app", "broker": f"kafka://{bootstrap}",
                                  "group_id": group, "commit_interval": 0.1,
                                  "state_dir": str(self.workdir / "state"),
                                  "log_level": "warning", **(settings or {})}
        lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        # Extra top-level TOML lines for experiments, e.g.
        # BENCH_AGENTD_TOML='agents.process.ring_size = "64MiB"'
        lines += os.environ.get("BENCH_AGENTD_TOML", "").split(";")
        lines += ["", "[kafka]", '"auto.offset.reset" = "earliest"']
        # librdkafka settings for experiments, e.g.
        # BENCH_AGENTD_KAFKA='fetch.queue.backoff.ms=50;queued.min.messages=200000'
        for item in filter(None, os.environ.get("BENCH_AGENTD_KAFKA", "").split(";")):
            name, _, value = item.partition("=")
            lines.append(f"{json.dumps(name.strip())} = {json.dumps(value.strip())}")
        lines.append("")
        self.config.write_text("\n".join(lines))
        self.tree = Path(tree)
        self.env = {**os.environ, "PYTHONPATH": pythonpath(self.tree), "BENCH_APP_ID": group,
                    **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Agentd:
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen([*agentd_command(self.tree), "start", str(self.config)],
                                         cwd=self.workdir,
                                         env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM (drain, commit, exit 0), then SIGKILL the group; returns the exit code."""
        if self.proc is None:
            return None
        kill_group(self.proc, grace, term_group=False)
        code = self.proc.returncode
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def exited(self) -> str:
        """Why the daemon is gone ("" while it runs)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            return ""
        return f"agentd exited {self.proc.returncode}: {self.log_tail()}"

    def log_tail(self, lines: int = 3) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])[-400:]

    def instance_pids(self) -> list[int]:
        """The daemon's descendants that run the agent (the zygote's children)."""
        import psutil

        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            children = root.children()
            grandchildren = [g for c in children for g in c.children()]
        except psutil.NoSuchProcess:
            return []
        return [p.pid for p in grandchildren] or [c.pid for c in children]


def mark_first(mark_dir: str) -> None:
    """Agent side: write ``first-<pid>`` (this instance's first processed message's
    wall-clock time) into ``mark_dir`` ("" : nowhere), for :func:`first_mark`."""
    if mark_dir:
        path = os.path.join(mark_dir, f"first-{os.getpid()}")
        with open(path + ".tmp", "w") as out:
            out.write(repr(time.time()))
        os.replace(path + ".tmp", path)


def first_mark(mark_dir: Path) -> float:
    """The earliest ``first-<pid>`` time the agent instances wrote (0 if none)."""
    times = []
    for path in mark_dir.glob("first-*"):
        if not path.name.endswith(".tmp"):
            with contextlib.suppress(ValueError, OSError):
                times.append(float(path.read_text()))
    return min(times, default=0.0)


def module_marks(mark_dir: Path) -> dict[str, str]:
    """Where the agent's processes imported ``supervisor`` and ``agentlib`` from (the
    ``modules-<pid>`` files ``_agentd_app`` writes), ``{}`` if none; a module found in
    two places maps to them joined by `` | ``."""
    found: dict[str, set[str]] = {}
    for path in mark_dir.glob("modules-*"):
        if not path.name.endswith(".tmp"):
            with contextlib.suppress(ValueError, OSError):
                for module, where in json.loads(path.read_text()).items():
                    found.setdefault(module, set()).add(str(where))
    return {module: " | ".join(sorted(places)) for module, places in sorted(found.items())}


def run_agentd(name: str, bootstrap: str, topic: str, count: int, instances: int,
               timeout: float, work: int = 0, partitions: int = 8,
               tree: Path = REPO, *, group: str | None = None,
               settings: dict[str, Any] | None = None,
               env: dict[str, str] | None = None) -> Outcome:
    """Time agentd from the first processed message until the group's committed offsets
    reach the end of ``topic`` (``count`` messages). The first message's time is what
    the agent writes on it; the end is when a 20 ms poll of the committed offsets sees
    the end, with ``commit_interval`` at 0.1 s, so the clock stops at most ~0.12 s late
    (rates are from the commit, the only proof that the work is done).

    ``tree``: whose agentd runs (see :class:`Agentd`); ``group`` (also the app id) and
    ``settings`` (config keys, e.g. another ``app`` and its ``table_dir``) for a bench
    that looks at what the run left behind; ``env``: more for the app (e.g. its sink
    topic). The outcome's ``extra`` carries
    ``modules``: where the agent's process found ``supervisor`` and ``agentlib``
    (``_agentd_app`` writes it into the mark dir), so a caller can check the tree."""
    missing = agentd_missing(tree)
    if missing:
        return Outcome(name, reason=missing)
    group = group or unique(f"bench-agentd{instances}")
    mark_dir = Path(tempfile.mkdtemp(prefix="bench-marks-"))
    app_env = {"BENCH_TOPIC": topic, "BENCH_INSTANCES": str(instances),
               "BENCH_WORK": str(work), "BENCH_MARK_DIR": str(mark_dir), **(env or {})}
    watch = OffsetWatch(bootstrap, group, topic, partitions)
    try:
        with Agentd(bootstrap, group, app_env, settings, tree=tree) as daemon:
            deadline = time.monotonic() + timeout
            while True:
                done = watch.committed_total()
                if done >= count:
                    last = time.time()
                    break
                why = daemon.exited()
                if why:
                    return Outcome(name, count=done, reason=why)
                if time.monotonic() > deadline:
                    return Outcome(name, count=done, reason=f"hung: {done} of {count} "
                                   f"committed after {timeout:.0f} s; {daemon.log_tail(2)}")
                time.sleep(0.02)
        first = first_mark(mark_dir)
        modules = module_marks(mark_dir)
    finally:
        watch.close()
        shutil.rmtree(mark_dir, ignore_errors=True)
    if not first:
        return Outcome(name, count=count, reason="the agent wrote no first-message mark")
    outcome = from_result(name, {"first": first, "last": last, "count": count,
                                 "instances": instances}, count)
    if modules:
        outcome.extra["modules"] = modules
    log(f"{name}: {outcome.msg_s:,.0f} msg/s")
    return outcome
