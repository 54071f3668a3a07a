"""Process-to-process transports side by side: agentd's ring against the usual suspects.

One run measures, on the same machine and in the same way, records/s and GB/s from a
writer process to a reader process for 100 B, 1 KiB and 64 KiB records:

- ``ring_single``: ``Ring.try_write`` / ``read_many(1)`` + ``release()`` per record;
- ``ring_batched``: ``write_many`` in chunks of 512 / ``read_many(4096)``;
- ``ring_copy``: as ``ring_batched``, but the reader copies every record out
  (``bytes(view)``), as a consumer that keeps records past ``release()`` must;
- ``mpqueue``: ``multiprocessing.Queue.put`` / ``get``;
- ``pipe``: ``multiprocessing.Pipe`` ``send_bytes`` / ``recv_bytes``;
- ``fasterfifo``: ``faster_fifo.Queue.put_many`` / ``get_many`` (the ``bench`` extra);

plus the wake-up latency of a reader asleep on an empty ring (p50/p99), next to a reader
blocked in ``Pipe.recv_bytes`` for reference. The reader of every contestant touches
each record (``len``); the ring's reader gets zero-copy views, the others get copies,
which is the point of the ring (``ring_copy`` shows the price of owning them). Each
measurement is repeated and the best run kept: the machine is shared, and interference
only ever slows a run down. The clock runs from the moment the reader is ready to
the moment it holds the last record (``perf_counter`` is CLOCK_MONOTONIC, shared by both
processes). Prints a markdown table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from supervisor.transport.ring import Ring

SIZES = {"100B": 100, "1KiB": 1024, "64KiB": 65536}
WRITE_CHUNK = 512
READ_MAX = 4096
WAIT = 10.0
FORK = mp.get_context("fork")
Channel = Any
Side = Callable[[Channel, list[bytes]], int]


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table and the JSON line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- the contestants
# Each contestant is (make channel, writer, reader, close channel). The writer gets the
# whole list of records; the reader gets a list whose length is the count to expect.

def ring_capacity(size: int) -> int:
    return 8 << 20 if size > 4096 else 1 << 20


def write_ring_single(ring: Ring, records: list[bytes]) -> int:
    try_write, wait = ring.try_write, ring.wait_writable
    for record in records:
        while not try_write(record):
            wait(len(record), WAIT)
    return len(records)


def read_ring_single(ring: Ring, expected: list[bytes]) -> int:
    read_many, release, wait = ring.read_many, ring.release, ring.wait_readable
    total = got = 0
    count = len(expected)
    while got < count:
        views = read_many(1)
        if views:
            total += len(views[0])
            got += 1
            release()
        else:
            wait(WAIT)
    return total


def write_ring_batched(ring: Ring, records: list[bytes]) -> int:
    write_many, wait = ring.write_many, ring.wait_writable
    for first in range(0, len(records), WRITE_CHUNK):
        chunk = records[first:first + WRITE_CHUNK]
        done, size = 0, len(chunk)
        while True:
            done += write_many(chunk, done)
            if done == size:
                break
            wait(len(chunk[done]), WAIT)
    return len(records)


def read_ring_batched(ring: Ring, expected: list[bytes], copy: bool = False) -> int:
    read_many, release, wait = ring.read_many, ring.release, ring.wait_readable
    total = got = 0
    count = len(expected)
    while got < count:
        views = read_many(READ_MAX)
        if views:
            records: list[Any] = list(map(bytes, views)) if copy else views
            total += sum(map(len, records))
            got += len(records)
            del views, records
            release()
        else:
            wait(WAIT)
    return total


def read_ring_copying(ring: Ring, expected: list[bytes]) -> int:
    return read_ring_batched(ring, expected, copy=True)


def write_queue(queue: Any, records: list[bytes]) -> int:
    put = queue.put
    for record in records:
        put(record)
    return len(records)


def read_queue(queue: Any, expected: list[bytes]) -> int:
    get = queue.get
    return sum(len(get()) for _ in range(len(expected)))


def write_pipe(pipe: tuple[Connection, Connection], records: list[bytes]) -> int:
    send = pipe[1].send_bytes
    for record in records:
        send(record)
    return len(records)


def read_pipe(pipe: tuple[Connection, Connection], expected: list[bytes]) -> int:
    recv = pipe[0].recv_bytes
    return sum(len(recv()) for _ in range(len(expected)))


def write_fasterfifo(queue: Any, records: list[bytes]) -> int:
    put_many = queue.put_many
    # put_many is all-or-nothing: a chunk must fit in the queue's buffer at once.
    chunk = max(1, min(WRITE_CHUNK, ring_capacity(len(records[0])) // (4 * len(records[0]))))
    for first in range(0, len(records), chunk):
        put_many(records[first:first + chunk], block=True, timeout=WAIT)
    return len(records)


def read_fasterfifo(queue: Any, expected: list[bytes]) -> int:
    get_many = queue.get_many
    total = got = 0
    count = len(expected)
    while got < count:
        records = get_many(block=True, timeout=WAIT, max_messages_to_get=READ_MAX)
        total += sum(map(len, records))
        got += len(records)
    return total


def make_fasterfifo(size: int) -> Any:
    from faster_fifo import Queue  # the bench extra; imported only when measured
    return Queue(max_size_bytes=max(ring_capacity(size), 4 * size + 1024))


def close_queue(queue: Any) -> None:
    queue.close()
    if hasattr(queue, "join_thread"):
        queue.join_thread()


def close_pipe(pipe: tuple[Connection, Connection]) -> None:
    for end in pipe:
        end.close()


CONTESTANTS: dict[str, tuple[Callable[[int], Channel], Side, Side, Callable[[Any], None]]] = {
    "ring_single": (lambda size: Ring.create(ring_capacity(size)), write_ring_single,
                    read_ring_single, Ring.close),
    "ring_batched": (lambda size: Ring.create(ring_capacity(size)), write_ring_batched,
                     read_ring_batched, Ring.close),
    "ring_copy": (lambda size: Ring.create(ring_capacity(size)), write_ring_batched,
                  read_ring_copying, Ring.close),
    "mpqueue": (lambda size: FORK.Queue(), write_queue, read_queue, close_queue),
    "pipe": (lambda size: FORK.Pipe(duplex=False), write_pipe, read_pipe, close_pipe),
    "fasterfifo": (make_fasterfifo, write_fasterfifo, read_fasterfifo, close_queue),
}


def record_count(name: str, size: int, quick: bool) -> int:
    """Enough records for ~0.3-1 s per contestant (more without --quick)."""
    fast = name in ("ring_batched", "ring_copy")
    per_run = (1_000_000 if fast else 200_000) if size <= 1024 else (40_000 if fast else 8_000)
    return per_run if quick else per_run * 3


# ----------------------------------------------------------------- measuring

def _reader_main(read: Side, channel: Channel, expected: list[bytes], ready: Any,
                 out: Connection) -> None:
    ready.set()
    total = read(channel, expected)
    out.send((time.perf_counter(), total))


def measure(name: str, size: int, count: int) -> dict[str, float]:
    """records/s and GB/s for one contestant and record size; zeros if it failed."""
    make, write, read, close = CONTESTANTS[name]
    payloads = [bytes([n]) * size for n in range(16)]
    records = [payloads[n & 15] for n in range(count)]
    channel = make(size)
    ready = FORK.Event()
    results, results_in = FORK.Pipe(duplex=False)
    reader = FORK.Process(target=_reader_main, args=(read, channel, records, ready,
                                                     results_in), daemon=True)
    reader.start()
    try:
        if not ready.wait(30):
            raise TimeoutError("reader did not start")
        started = time.perf_counter()
        write(channel, records)
        if not results.poll(120):
            raise TimeoutError("reader did not finish")
        finished, total = results.recv()
        reader.join(30)
    except Exception as exc:  # one broken contestant must not stop the run
        log(f"{name} {size} B failed: {exc!r}")
        reader.kill()
        return {"rec_s": 0.0, "GBps": 0.0}
    finally:
        close(channel)
    seconds = finished - started
    assert total == size * count, f"{name}: reader saw {total} bytes"
    return {"rec_s": count / seconds, "GBps": total / seconds / 1e9}


def _wakeup_reader(ring: Ring, rounds: int, ready: Any, out: Connection) -> None:
    ready.set()
    latencies = []
    for _ in range(rounds):
        while not ring.wait_readable(WAIT):
            pass
        now = time.perf_counter_ns()
        views = ring.read_many(1)
        latencies.append(now - struct.unpack_from("<q", views[0])[0])
        del views
        ring.release()
    out.send((latencies, ring.sleeps, ring.timeouts))


def _wakeup_pipe_reader(pipe: tuple[Connection, Connection], rounds: int, ready: Any,
                        out: Connection) -> None:
    ready.set()
    latencies = []
    for _ in range(rounds):
        data = pipe[0].recv_bytes()
        latencies.append(time.perf_counter_ns() - struct.unpack_from("<q", data)[0])
    out.send((latencies, rounds, 0))


def wakeup_latency(transport: str, rounds: int) -> dict[str, float]:
    """p50/p99 µs from a write to a *sleeping* reader holding the record."""
    ready = FORK.Event()
    results, results_in = FORK.Pipe(duplex=False)
    channel: Any
    if transport == "ring":
        channel = Ring.create(1 << 16)
        send = channel.try_write
        target: Callable[..., None] = _wakeup_reader
    else:
        channel = FORK.Pipe(duplex=False)
        send = channel[1].send_bytes
        target = _wakeup_pipe_reader
    reader = FORK.Process(target=target, args=(channel, rounds, ready, results_in))
    reader.start()
    ready.wait(30)
    for _ in range(rounds):
        time.sleep(0.002)                  # long enough for the reader to fall asleep
        send(struct.pack("<q", time.perf_counter_ns()))
    latencies, sleeps, timeouts = results.recv()
    reader.join(30)
    if transport == "ring":
        channel.close()
    else:
        close_pipe(channel)
    latencies.sort()
    return {"p50_us": statistics.median(latencies) / 1000,
            "p99_us": latencies[int(len(latencies) * 0.99) - 1] / 1000,
            "sleeps": sleeps, "timeouts": timeouts}


def per_record_cost(size: int, trials: int) -> dict[str, float]:
    """ns per record of ``write_many`` and of ``read_many`` + ``release``, one process.

    The best of ``trials`` batches (512 records, fewer when they would not fit), so the
    number hardly depends on load or scheduling: with both sides on free cores the
    pipeline can reach about 1e9 / max(write, read) records/s; on one shared core,
    1e9 / (write + read).
    """
    batch = min(WRITE_CHUNK, ring_capacity(size) // (size + 16))
    records = [bytes([n & 255]) * size for n in range(batch)]
    best_write = best_read = float("inf")
    with Ring.create(ring_capacity(size)) as ring:
        for _ in range(trials):
            started = time.perf_counter()
            written = ring.write_many(records)
            wrote = time.perf_counter()
            views = ring.read_many(READ_MAX)
            read = len(views)
            del views
            ring.release()
            finished = time.perf_counter()
            assert written == read == batch
            best_write = min(best_write, (wrote - started) / batch)
            best_read = min(best_read, (finished - wrote) / batch)
    return {"write_ns": best_write * 1e9, "read_ns": best_read * 1e9}


# ----------------------------------------------------------------- output

def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in [headers, *rows]]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--quick", action="store_true", help="small counts (< 60 s)")
    cli.add_argument("--only", nargs="*", default=list(CONTESTANTS), help="contestants")
    cli.add_argument("--repeat", type=int, default=None,
                     help="runs per measurement, best kept (default 2 with --quick, else 3)")
    options = cli.parse_args()
    repeat = options.repeat or (2 if options.quick else 3)
    results: dict[str, dict[str, dict[str, float]]] = {}
    # Rounds outermost: every contestant gets a run in each round, so a burst of load
    # from elsewhere on the machine does not fall on one contestant's runs only.
    for round_number in range(1, repeat + 1):
        for label, size in SIZES.items():
            for name in options.only:
                count = record_count(name, size, options.quick)
                log(f"round {round_number}/{repeat}: {name} {label} x {count:,}")
                run = measure(name, size, count)
                best = results.setdefault(name, {}).get(label)
                if best is None or run["rec_s"] > best["rec_s"]:
                    results[name][label] = run
    rounds = 300 if options.quick else 2000
    wakeups = {t: wakeup_latency(t, rounds) for t in ("ring", "pipe")}
    costs = {label: per_record_cost(size, 200 if options.quick else 1000)
             for label, size in SIZES.items()}

    rows = []
    for name, by_size in results.items():
        row = [name]
        for label in SIZES:
            got = by_size[label]
            row.append(f"{got['rec_s']:,.0f} rec/s, {got['GBps']:.2f} GB/s")
        rows.append(row)
    print(table(["transport", *SIZES], rows))
    print()
    print(table(["wake-up of a sleeping reader", "p50 µs", "p99 µs"],
                [[t, f"{w['p50_us']:.1f}", f"{w['p99_us']:.1f}"] for t, w in wakeups.items()]))
    print()
    print(table(["ring, one process, best batch", *SIZES],
                [[f"{side} ns/record", *(f"{costs[label][side + '_ns']:.0f}" for label in SIZES)]
                 for side in ("write", "read")]))
    print()

    def rate(name: str, label: str, key: str = "rec_s") -> float:
        return round(results.get(name, {}).get(label, {}).get(key, 0.0), 3)

    summary: dict[str, object] = {}
    for name in results:
        for label in SIZES:
            if name.startswith("ring_"):
                key = f"ring_{label}_{name.removeprefix('ring_')}_rec_s"
            else:
                key = f"{name}_{label}_rec_s"
            summary[key] = rate(name, label)
    mpqueue = rate("mpqueue", "100B")
    batched = rate("ring_batched", "100B")
    summary["ratio_vs_mpqueue"] = round(batched / mpqueue, 2) if mpqueue else 0.0
    summary["ring_64KiB_GBps"] = rate("ring_batched", "64KiB", "GBps")
    summary["ring_64KiB_copy_GBps"] = rate("ring_copy", "64KiB", "GBps")
    summary["wakeup_p50_us"] = round(wakeups["ring"]["p50_us"], 1)
    summary["wakeup_p99_us"] = round(wakeups["ring"]["p99_us"], 1)
    summary["pipe_wakeup_p50_us"] = round(wakeups["pipe"]["p50_us"], 1)
    summary["wakeup_timeouts"] = wakeups["ring"]["timeouts"]
    summary["ring_100B_write_ns"] = round(costs["100B"]["write_ns"], 1)
    summary["ring_100B_read_ns"] = round(costs["100B"]["read_ns"], 1)
    summary["load_avg_1m"] = os.getloadavg()[0]
    summary["cpus"] = os.cpu_count()
    summary["quick"] = options.quick
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
