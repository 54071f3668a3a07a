"""`agentd dev-broker` and DevBroker: a real Kafka that starts, serves groups, and leaves
nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import kafkatools
import psutil
from confluent_kafka import Consumer

from supervisor.devbrokers.devbroker import DevBroker, free_port

AGENTD = [sys.executable, str(Path(__file__).resolve().parent.parent / "bin" / "agentd")]


def round_trip_in_group(bootstrap: str, topic: str, count: int) -> dict[int, int]:
    """Produce ``count`` messages, consume them in a group, commit; return committed offsets."""
    kafkatools.produce(bootstrap, topic, ((f"k{i}", f"v{i}") for i in range(count)))
    group = kafkatools.unique_name("g")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: set[bytes] = set()
    try:
        while len(values) < count:
            for msg in consumer.consume(500, 30.0):
                assert msg.error() is None, msg.error()
                values.add(msg.value() or b"")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert values == {f"v{i}".encode() for i in range(count)}
    return kafkatools.committed_offsets(bootstrap, group, topic)


def java_children(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "java" in p.name()]


def test_dev_broker_command_round_trips_1000_messages_and_sigint_leaves_no_java() -> None:
    proc, bootstrap = kafkatools.spawn_dev_broker("--partitions", "3", "--topic", "pre:5")
    try:
        jvms = java_children(proc.pid)
        assert len(jvms) == 1
        assert len(kafkatools.end_offsets(bootstrap, "pre")) == 5  # --topic, made before ready
        topic = kafkatools.unique_name("auto")  # auto-created with --partitions
        committed = round_trip_in_group(bootstrap, topic, 1000)
        assert set(committed) == {0, 1, 2}
        assert sum(committed.values()) == 1000
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == ""  # the bootstrap line was the only stdout line
    assert not jvms[0].is_running()


def test_broker_jvm_dies_when_its_python_parent_is_killed() -> None:
    proc, _ = kafkatools.spawn_dev_broker()
    jvm = java_children(proc.pid)[0]
    workdirs = [Path(a).parent for a in jvm.cmdline() if a.endswith("server.properties")]
    proc.kill()
    proc.wait()
    jvm.wait(60)  # psutil raises TimeoutExpired if the kernel did not kill it
    for workdir in workdirs:  # a SIGKILLed parent cannot clean up; do it for it
        shutil.rmtree(workdir, ignore_errors=True)


def test_dev_broker_restarts_on_same_data_dir_and_port_keeping_messages(tmp_path: Path) -> None:
    port = free_port()
    with DevBroker(data_dir=tmp_path / "kafka", port=port) as broker:
        topic = kafkatools.create_topic(broker.bootstrap, kafkatools.unique_name(), 2)
        kafkatools.produce(broker.bootstrap, topic, ((b"k", b"before") for _ in range(10)))
    assert (tmp_path / "kafka" / "meta.properties").exists()  # the data dir is kept
    with DevBroker(data_dir=tmp_path / "kafka", port=port) as broker:
        kafkatools.produce(broker.bootstrap, topic, [(b"k", b"after")])
        values = [r.value for r in kafkatools.read_to_end(broker.bootstrap, topic)]
    assert values == [b"before"] * 10 + [b"after"]


def test_missing_java_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty dir: no java, no mvn
    done = subprocess.run([*AGENTD, "dev-broker"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "java not found" in done.stderr


def test_missing_maven_on_cold_cache_exits_2_with_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = shutil.which("java")
    assert java is not None
    (bin_dir / "java").symlink_to(java)
    env = {**os.environ, "PATH": str(bin_dir), "AGENTD_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([*AGENTD, "dev-broker"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "mvn not found" in done.stderr


def test_session_fixture_broker_serves_topics_made_by_new_topic(
        kafka_bootstrap: str, new_topic) -> None:
    topic = new_topic(partitions=4)
    kafkatools.produce(kafka_bootstrap, topic, ((str(i % 7), str(i)) for i in range(200)))
    records = kafkatools.read_to_end(kafka_bootstrap, topic)
    assert sorted(int(r.value or b"") for r in records) == list(range(200))
    assert sum(kafkatools.end_offsets(kafka_bootstrap, topic).values()) == 200
    assert len(kafkatools.end_offsets(kafka_bootstrap, topic)) == 4


FAKE_MVN = """#!/bin/sh
# Stands in for Maven: logs each call, then "downloads" one jar into -DoutputDirectory.
echo call >> "$FAKE_MVN_LOG"
sleep 1
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac
done
mkdir -p "$out" && touch "$out/kafka_2.13-0.jar"
"""

RACE = """
import sys
from pathlib import Path
from supervisor.devbrokers.devbroker import ensure_jars
print(ensure_jars(Path(sys.argv[1])))
"""


def test_racing_sessions_on_a_cold_cache_fetch_the_jars_once(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mvn").write_text(FAKE_MVN)
    (bin_dir / "mvn").chmod(0o755)
    log = tmp_path / "mvn.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_MVN_LOG": str(log)}
    cache = tmp_path / "cache"
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(cache)], env=env,
                               stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    assert len(outputs) == 1
    libs = Path(outputs.pop()) / "libs"
    assert [p.name for p in libs.iterdir()] == ["kafka_2.13-0.jar"]
    assert log.read_text().splitlines() == ["call"]  # one fetch, the others waited for it
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no staging left
