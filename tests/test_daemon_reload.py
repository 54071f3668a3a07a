"""SIGHUP under steady load: new code takes over with nothing lost or repeated; broken
code or config is refused and the old code keeps running untouched.

The agent tags every output with its module's ``TAG``; a reload rewrites the module
(``PYTHONDONTWRITEBYTECODE`` so a same-second, same-size edit is never masked by a
stale ``.pyc``).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import kafkatools
import psutil
import pytest
from agentdproc import Agentd, drain_and_stop, wait_until
from agentsrc import agent_module
from steadyload import SteadyLoad, longest_gap_ms, parse_output, switch_gap_ms

from supervisor.cli.control_client import request

PARTITIONS = 4


def tagging(tag: str) -> str:
    """The tagging agent's module: every output is ``TAG + value``."""
    prefix = f"{tag}:".encode() if tag else b""
    return agent_module("tagging-app", "tagger", "yield TAG + value",
                        module=f"TAG = {prefix!r}")


def write_module(workdir: Path, source: str) -> None:
    (workdir / "tagging_agent.py").write_text(source)


def tagging_daemon(workdir: Path, bootstrap: str, source: str, sink: str,
                   group: str) -> Agentd:
    settings = {"app": "tagging_agent:app", "broker": f"kafka://{bootstrap}",
                "group_id": group, "commit_interval": 0.5, "log_level": "INFO"}
    return Agentd(workdir, settings, agents={"tagger": {"instances": 2}},
                  modules={"tagging_agent": tagging("v1")},
                  env={"IN_TOPIC": source, "SINK_TOPIC": sink,
                       "PYTHONDONTWRITEBYTECODE": "1"})


def status_of(state_dir: Path) -> dict:
    return request(state_dir, "status")


def reloads_done(daemon: Agentd) -> int:
    return daemon.log().count("reload done in")


def reloads_refused(daemon: Agentd) -> int:
    return daemon.log().count("reload refused")


def sink_outputs(bootstrap: str, sink: str) -> list[tuple[int, bytes]]:
    return [(r.timestamp_ms, r.value) for r in kafkatools.read_to_end(bootstrap, sink)
            if r.value is not None]


def assert_exactly_once(outputs: list[tuple[int, bytes]], sent: int) -> None:
    counts = Counter(parse_output(value)[2] for _, value in outputs)
    missing = set(range(sent)) - set(counts)
    assert not missing, f"{len(missing)} inputs lost, e.g. {sorted(missing)[:5]}"
    repeated = {i: n for i, n in counts.items() if n > 1}
    assert not repeated, f"{len(repeated)} inputs processed twice, e.g. {list(repeated)[:5]}"


def tags_by_partition(outputs: list[tuple[int, bytes]]) -> dict[int, list[str]]:
    """Each input partition's output tags in input order."""
    rows: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for _, value in outputs:
        tag, part, index = parse_output(value)
        rows[part].append((index, tag))
    return {part: [tag for _, tag in sorted(items)] for part, items in rows.items()}


def pause_ms(daemon: Agentd) -> list[float]:
    return [float(ms) for ms in re.findall(r"longest pause (\d+) ms", daemon.log())]


@pytest.mark.kafka
def test_reload_under_load_switches_to_new_code_with_every_input_exactly_once(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(PARTITIONS), new_topic(1)
    group = kafkatools.unique_name("reload")
    with tagging_daemon(tmp_path, kafka_bootstrap, source, sink, group) as daemon:
        daemon.wait_consuming()
        with SteadyLoad(kafka_bootstrap, source, partitions=PARTITIONS, rate=500) as load:
            time.sleep(2.0)
            pids_before = daemon.instance_pids()
            write_module(tmp_path, tagging("v2"))
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: daemon.assert_running() or reloads_done(daemon), 60,
                       "the reload to finish", interval=0.1)
            time.sleep(2.0)
            sent = load.stop()
        drain_and_stop(daemon, kafka_bootstrap, group, source)
        pids_after_reload = set(daemon.instance_pids()) if daemon.proc.poll() is None else set()
        assert not set(pids_before) & pids_after_reload
    outputs = sink_outputs(kafka_bootstrap, sink)
    assert_exactly_once(outputs, sent)
    for part, tags in tags_by_partition(outputs).items():
        first_v2 = tags.index("v2")
        assert set(tags[:first_v2]) == {"v1"} and set(tags[first_v2:]) == {"v2"}, \
            f"partition {part}: a v1 output after the switch to v2"
    print(f"\nreload under {load.rate:.0f} msg/s: {sent} inputs, each once; processing gap "
          f"at the switch (last v1 → first v2 output of a partition) "
          f"{switch_gap_ms(outputs, 'v1', 'v2'):.0f} ms; longest per-partition gap in the "
          f"whole run {longest_gap_ms(outputs):.0f} ms; supervisor's longest instance "
          f"pause {max(pause_ms(daemon), default=0):.0f} ms")


@pytest.mark.kafka
def test_reload_into_a_syntax_error_keeps_old_code_running_then_a_good_reload_works(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(PARTITIONS), new_topic(1)
    group = kafkatools.unique_name("broken")
    with tagging_daemon(tmp_path, kafka_bootstrap, source, sink, group) as daemon:
        daemon.wait_consuming()
        with SteadyLoad(kafka_bootstrap, source, partitions=PARTITIONS, rate=300) as load:
            time.sleep(1.0)
            pids = daemon.instance_pids()
            write_module(tmp_path, tagging("v2") + "\ndef broken(:\n")
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: daemon.assert_running() or reloads_refused(daemon), 60,
                       "the reload to be refused", interval=0.1)
            status = status_of(tmp_path / "state")
            assert status["reload"]["state"] == "failed"
            assert "SyntaxError" in status["reload"]["last_error"]
            time.sleep(1.0)
            assert daemon.instance_pids() == pids, "no instance was restarted"
            write_module(tmp_path, tagging("v2"))
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: daemon.assert_running() or reloads_done(daemon), 60,
                       "the good reload to finish", interval=0.1)
            assert status_of(tmp_path / "state")["reload"]["state"] == "idle"
            time.sleep(1.0)
            sent = load.stop()
        drain_and_stop(daemon, kafka_bootstrap, group, source)
    refused = [line for line in daemon.log().splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "SyntaxError" in refused[0]
    outputs = sink_outputs(kafka_bootstrap, sink)
    assert_exactly_once(outputs, sent)
    assert all(tags[-1] == "v2" for tags in tags_by_partition(outputs).values())
    print(f"\nbroken reload refused; longest per-partition gap over the whole run "
          f"{longest_gap_ms(outputs):.0f} ms at {load.rate:.0f} msg/s")


@pytest.mark.kafka
def test_ten_reloads_in_a_row_lose_nothing_repeat_nothing_and_leak_no_fds_or_threads(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(PARTITIONS), new_topic(1)
    group = kafkatools.unique_name("tenhup")
    with tagging_daemon(tmp_path, kafka_bootstrap, source, sink, group) as daemon:
        daemon.wait_consuming()
        supervisor = psutil.Process(daemon.proc.pid)
        with SteadyLoad(kafka_bootstrap, source, partitions=PARTITIONS, rate=300) as load:
            time.sleep(1.0)
            fds_before, threads_before = supervisor.num_fds(), supervisor.num_threads()
            started = time.monotonic()
            for n in range(1, 11):
                write_module(tmp_path, tagging(f"v{n + 1}"))
                daemon.proc.send_signal(signal.SIGHUP)
                wait_until(lambda n=n: daemon.assert_running() or reloads_done(daemon) >= n,
                           60, f"reload {n} to finish", interval=0.05)
            took = time.monotonic() - started
            time.sleep(1.0)
            fds_after, threads_after = supervisor.num_fds(), supervisor.num_threads()
            sent = load.stop()
        drain_and_stop(daemon, kafka_bootstrap, group, source)
    print(f"\n10 reloads in {took:.1f}s; fds {fds_before} → {fds_after}, threads "
          f"{threads_before} → {threads_after}; longest instance pause "
          f"{max(pause_ms(daemon)):.0f} ms")
    assert (fds_after, threads_after) == (fds_before, threads_before)
    outputs = sink_outputs(kafka_bootstrap, sink)
    assert_exactly_once(outputs, sent)
    assert all(tags[-1] == "v11" for tags in tags_by_partition(outputs).values())


@pytest.mark.kafka
def test_hups_during_a_reload_are_queued_into_one_more_reload(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(PARTITIONS), new_topic(1)
    group = kafkatools.unique_name("queued")
    with tagging_daemon(tmp_path, kafka_bootstrap, source, sink, group) as daemon:
        daemon.wait_consuming()
        write_module(tmp_path, tagging("v2"))
        os.kill(daemon.proc.pid, signal.SIGHUP)
        wait_until(lambda: "importing the app afresh" in daemon.log(), 30,
                   "the first reload to start", interval=0.01)
        for _ in range(2):
            os.kill(daemon.proc.pid, signal.SIGHUP)
            time.sleep(0.02)
        wait_until(lambda: daemon.assert_running() or reloads_done(daemon) >= 2, 60,
                   "the queued reload to finish", interval=0.1)
        time.sleep(1.0)
        assert reloads_done(daemon) == 2, "three HUPs in a burst: the running reload plus one"
        assert "queued behind the one running" in daemon.log()
        assert daemon.stop() == 0


def set_instances(daemon: Agentd, count: object) -> None:
    text = daemon.config.read_text()
    daemon.config.write_text(re.sub(r"instances = \S+", f"instances = {count}", text))


@pytest.mark.kafka
def test_reload_scales_instances_up_and_down_and_refuses_an_invalid_config(
        kafka_bootstrap, new_topic, tmp_path):
    source, sink = new_topic(PARTITIONS), new_topic(1)
    group = kafkatools.unique_name("scale")
    with tagging_daemon(tmp_path, kafka_bootstrap, source, sink, group) as daemon:
        daemon.wait_consuming()
        with SteadyLoad(kafka_bootstrap, source, partitions=PARTITIONS, rate=300) as load:
            time.sleep(1.0)
            set_instances(daemon, 0)
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: reloads_refused(daemon), 30, "the bad config to be refused")
            assert "config error" in status_of(tmp_path / "state")["reload"]["last_error"]
            assert len(daemon.instance_pids()) == 2
            for count, done in ((3, 1), (1, 2)):
                set_instances(daemon, count)
                daemon.proc.send_signal(signal.SIGHUP)
                wait_until(lambda done=done: daemon.assert_running() or
                           reloads_done(daemon) >= done, 60, f"the reload to {count}")
                wait_until(lambda count=count: len(daemon.instance_pids()) == count, 30,
                           f"{count} instance processes")
                assert len(status_of(tmp_path / "state")["instances"]) == count
                time.sleep(1.0)
            sent = load.stop()
        drain_and_stop(daemon, kafka_bootstrap, group, source)
    assert_exactly_once(sink_outputs(kafka_bootstrap, sink), sent)
