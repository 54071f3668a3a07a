"""A RocksDB shard's write buffer: reads see pending writes, a flush stores rows and marks
together, and a crash that loses the buffer loses nothing acked: a process killed -9
after writes it never flushed, then its records redelivered to a new process, ends
with exact counts (real RocksDB, real Kafka changelog)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentlib.tables.shards import RocksShard

REPO = Path(__file__).resolve().parent.parent


def test_reads_see_pending_writes_and_a_flush_stores_rows_with_their_marks(tmp_path):
    shard = RocksShard(tmp_path / "s", 0)
    shard.write(b"a", b"1", "src", (5, 0))
    shard.write(b"b", b"2", "src", (5, 1))
    shard.write(b"a", None, "src", (6, 0))  # a delete, pending too
    assert shard.pending
    assert shard.get(b"a") is None and shard.get(b"b") == b"2"
    assert shard.mark("src") == (6, 0)
    shard.flush()
    assert not shard.pending
    shard.write(b"c", b"3", "src", (7, 0))
    assert dict(shard.items()) == {b"b": b"2", b"c": b"3"}  # items() stores first
    shard.close()

    again = RocksShard(tmp_path / "s", 0)
    assert (again.get(b"a"), again.get(b"b"), again.get(b"c")) == (None, b"2", b"3")
    assert again.mark("src") == (7, 0)
    again.close()


_KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from agentlib.tables.shards import RocksShard
    shard = RocksShard(Path(sys.argv[1]), 0)
    shard.write(b"acked", b"1", "src", (10, 0))
    shard.flush()  # what the worker does before it acks offset 10
    shard.write(b"acked", b"2", "src", (11, 0))
    shard.write(b"lost", b"1", "src", (11, 1))
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_crash_loses_only_unflushed_writes_and_their_marks_together(tmp_path):
    path = tmp_path / "s"
    done = subprocess.run([sys.executable, "-c", _KILLED, str(path)], env=_env(),
                          capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr
    shard = RocksShard(path, 0)
    # Offset 10's write survived with its mark; offset 11 left nothing, not even its
    # mark, so its redelivery is applied rather than skipped.
    assert shard.get(b"acked") == b"1" and shard.get(b"lost") is None
    assert shard.mark("src") == (10, 0)
    shard.close()


_COUNTER = textwrap.dedent("""
    import asyncio, json, os, signal, sys
    from pathlib import Path
    from types import SimpleNamespace
    from agentlib.kafka import KafkaProducer
    from agentlib.tables.changelog import ChangelogRuntime

    table_dir, bootstrap, topic, first, last, acked, wait = sys.argv[1:8]
    table = SimpleNamespace(name="counts", changelog_topic_name=topic, store=None,
                            is_global=False)
    producer = KafkaProducer(bootstrap)

    async def main():
        runtime = ChangelogRuntime(Path(table_dir), producer=lambda: producer,
                                   consumer_settings={"bootstrap.servers": bootstrap})
        shard = runtime.shard(table, 0)
        for offset in range(int(first), int(last) + 1):
            event = SimpleNamespace(message=SimpleNamespace(topic="src", offset=offset),
                                    _ticket=None)
            held = shard.get(b'"k"')
            count = json.loads(held) + 1 if held is not None else 1
            runtime.write(table, shard, event, b'"k"', json.dumps(count).encode())
            if offset == int(acked):  # the records up to here are acked: delivered, stored
                await asyncio.to_thread(producer.flush, 30)
                await asyncio.sleep(0.1)
                runtime.flush()
        if wait == "delivered":
            await asyncio.to_thread(producer.flush, 30)
        if int(acked) < int(last):  # crash with the rest pending in the shard's buffer
            os.kill(os.getpid(), signal.SIGKILL)
        runtime.close()

    asyncio.run(main())
""")


@pytest.mark.kafka
@pytest.mark.parametrize("wait", ["delivered", "not-waited"])
def test_records_redelivered_after_a_crash_that_lost_the_buffer_count_once(
        kafka_bootstrap, new_topic, tmp_path, wait):
    """Offsets 0-9 counted, 0-4 acked, then kill -9 with 5-9's writes in the buffer
    (their changelog rows delivered, or maybe not): 5-9 redelivered to a new process,
    the count is 10 (neither 15 nor 5), read back from the shard."""
    changelog = new_topic(1)

    def run(first: int, last: int, acked: int) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _COUNTER, str(tmp_path), kafka_bootstrap, changelog,
             str(first), str(last), str(acked), wait], env=_env(), capture_output=True,
            timeout=120)
        return done.returncode

    assert run(0, 9, 4) == -9
    assert run(5, 9, 9) == 0  # redelivery of what was not acked
    shard = RocksShard(tmp_path / "counts" / "0", 0)
    assert shard.get(b'"k"') == b"10"
    assert shard.mark("src") == (9, 0)
    shard.close()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
