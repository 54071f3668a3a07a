"""The data path's per-message loop: read a partition's run of fetched messages and
encode each as a ``RECORD`` (issue 21, the supervisor's ceiling).

Why a module of its own: this loop is what the supervisor costs per message, and it
has two implementations that must agree. ``_runscan.pyx`` is the compiled one (built by
``pip install``, setuptools and Cython in pyproject.toml's build requirements); the
pure-Python :func:`scan_run_py` below is the fallback, used when the extension was not
built, or when ``AGENTD_PURE_PYTHON=1`` forces it (the tests run both). The choice is
made once, at import; :data:`COMPILED` says which one :func:`scan_run` is.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from typing import Any

from supervisor.transport.wire import encode_record

__all__ = ["COMPILED", "HEADERS_OF", "scan_run", "scan_run_py"]

#: ``msg.headers()`` through a call that checks for an error set with a result:
#: confluent-kafka returns a list holding NULL with an error set for a header name that
#: is not UTF-8; called directly the error surfaces in some later call (or the NULL
#: crashes the interpreter); through the methodcaller it is a SystemError at once.
HEADERS_OF = operator.methodcaller("headers")


def scan_run_py(messages: list[Any], start: int, topic: str, partition: int,
                topic_index: int, offsets: list[int], keys: list[bytes | None],
                records: list[bytes]) -> int:
    """Append offset, key and encoded record of ``messages[start:]`` while they belong
    to ``(topic, partition)``, carry no error and have readable headers; return the
    index of the first message not taken (``len(messages)`` at the end), or ``-i - 1``
    when it stopped at message ``i`` because its headers could not be read.

    The caller deals with the message it stops at: another partition's run, an error,
    or (a negative return) headers that raised SystemError. That message's headers must
    not be read again: confluent-kafka keeps the list holding NULL it made, and a
    second ``headers()`` returns it without the error (reading it crashes)."""
    headers_of, encode = HEADERS_OF, encode_record
    end = len(messages)
    i = start
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
        ts_type, ts = msg.timestamp()
        offsets.append(offset)
        keys.append(key)
        records.append(encode(topic_index, partition, offset, ts if ts_type else -1, key,
                              msg.value(), headers))
        i += 1
    return i


def _choose() -> tuple[Callable[..., int], bool]:
    if os.environ.get("AGENTD_PURE_PYTHON", "") not in ("", "0"):
        return scan_run_py, False
    try:
        from supervisor.transport._runscan import scan_run as compiled
    except ImportError:  # not built (no compiler at install): the fallback, silently
        return scan_run_py, False
    return compiled, True


scan_run, COMPILED = _choose()
