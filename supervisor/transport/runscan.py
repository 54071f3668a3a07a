"""The data path's per-message loops: read a partition's run of fetched messages and
encode each as a ``RECORD``, and copy encoded records into a ring's data area (issue
21, the supervisor's ceiling).

Why a module of its own: these loops are what the supervisor costs per message, and
each has two implementations that must agree. ``_runscan.pyx`` is the compiled one (built by
``pip install``, setuptools and Cython in pyproject.toml's build requirements); the
pure-Python :func:`scan_run_py` below is the fallback, used when the extension was not
built, or when ``AGENTD_PURE_PYTHON=1`` forces it (the tests run both). The choice is
made once, at import, for both loops; :data:`COMPILED` says which ones
:func:`scan_run` and :func:`copy_records` are.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from typing import Any

from supervisor.transport.wire import encode_record

__all__ = ["COMPILED", "HEADERS_OF", "copy_records", "copy_records_py", "record_sizes",
           "record_sizes_py", "scan_run", "scan_run_py"]

#: ``msg.headers()`` through a call that checks for an error set with a result:
#: confluent-kafka returns a list holding NULL with an error set for a header name that
#: is not UTF-8; called directly the error surfaces in some later call (or the NULL
#: crashes the interpreter); through the methodcaller it is a SystemError at once.
HEADERS_OF = operator.methodcaller("headers")


def scan_run_py(messages: list[Any], start: int, topic: str, partition: int,
                topic_index: int, offsets: list[int], keys: list[bytes | None] | None,
                records: list[bytes]) -> int:
    """Append offset, key and encoded record of ``messages[start:]`` while they belong
    to ``(topic, partition)``, carry no error, have readable headers and increasing
    offsets; return the index of the first message not taken (``len(messages)`` at the
    end), or ``-i - 1`` when it stopped at message ``i`` because its headers could not
    be read.

    ``keys`` None: the caller routes by partition and needs no keys. A run's offsets
    strictly increase, so its offset tracking and its instance's run of records need
    no check. The caller deals with the message it stops at: another partition's run,
    an error, an offset that falls back, or (a negative return) headers that raised
    SystemError, a header name that is not UTF-8. The caller must not call that
    message's ``headers()`` again: confluent-kafka keeps the list it failed to fill
    (a NULL item in it) and returns it on the next call with no error, and reading it
    crashes the interpreter."""
    headers_of, encode = HEADERS_OF, encode_record
    end = len(messages)
    i = start
    previous = -1
    while i < end:
        msg = messages[i]
        if msg.error() is not None or msg.partition() != partition \
                or msg.topic() != topic:
            return i
        try:
            headers = headers_of(msg)
        except SystemError:
            return -i - 1
        offset, key = msg.offset(), msg.key()
        if offset <= previous and i > start:
            return i
        previous = offset
        ts_type, ts = msg.timestamp()
        offsets.append(offset)
        if keys is not None:
            keys.append(key)
        records.append(encode(topic_index, partition, offset, ts if ts_type else -1, key,
                              msg.value(), headers))
        i += 1
    return i


def record_sizes_py(records: list[bytes]) -> tuple[int, int]:
    """``(total, longest)`` length of ``records``: what a run queues in a backlog, and
    whether any record is too large for a ring, in one pass."""
    return sum(map(len, records)), max(map(len, records), default=0)


def copy_records_py(data: memoryview, words: memoryview, mask: int, head: int, stop: int,
                    records: list[Any], start: int, end: int) -> tuple[int, int, int]:
    """Copy ``records[start:end]`` into a ring's data area from byte position ``head``
    (the ring's layout: a u64 length word, the payload, padded to 8) while each ends
    at or before ``stop``; ``None`` entries (records retired while they waited) are
    skipped. Returns ``(index of the first record not taken, new head, payload bytes
    copied)``.

    Only the copy: :class:`~supervisor.transport.ring.Ring` decides ``stop`` (the
    reader's tail a lap on, or the end of the data area), wraps, and publishes head
    after this returns, so every store here precedes the index store (ring.py's
    ordering argument). ``words`` is ``data`` cast to native u64s."""
    i, nbytes = start, 0
    end = min(end, len(records))
    while i < end:
        record = records[i]
        if record is not None:
            length = len(record)
            after = head + ((length + 15) & ~7)  # header + payload rounded up to 8
            if after > stop:
                break
            offset = (head & mask) + 8
            words[(offset >> 3) - 1] = length
            data[offset:offset + length] = record
            head = after
            nbytes += length
        i += 1
    return i, head, nbytes


Loops = tuple[Callable[..., int], Callable[..., tuple[int, int, int]],
              Callable[[list[bytes]], tuple[int, int]]]


def _choose() -> tuple[Loops, bool]:
    pure = (scan_run_py, copy_records_py, record_sizes_py)
    if os.environ.get("AGENTD_PURE_PYTHON", "") not in ("", "0"):
        return pure, False
    try:
        from supervisor.transport._runscan import copy_records as compiled_copy
        from supervisor.transport._runscan import record_sizes as compiled_sizes
        from supervisor.transport._runscan import scan_run as compiled_scan
    except ImportError:  # not built (no compiler at install): the fallback, silently
        return pure, False
    return (compiled_scan, compiled_copy, compiled_sizes), True


(scan_run, copy_records, record_sizes), COMPILED = _choose()
