"""Scalar config values: each parser takes what ``tomllib`` produced and returns the
typed value or raises ``ValueError(reason)``; ``config.py`` adds the key path.

Kept apart from ``config.py`` so that module is only the file's *structure* (tables,
defaults, unknown keys) and this one only what a single value may be.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from supervisor.config.units import kind, parse_duration, parse_size

ORDERINGS = ("partition", "key", "none")
ERROR_POLICIES = ("log", "dead_letter", "retry", "crash")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EMBEDDED = "embedded"
MIN_RING_SIZE = 64 * 1024
MAX_RING_SIZE = 1024**3
_APP_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def string(value: Any) -> str:
    """A TOML string, as is."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {kind(value)}")
    return value


def nonempty_string(value: Any) -> str:
    """A string with something besides whitespace (names, hosts)."""
    if not string(value).strip():
        raise ValueError("must not be empty")
    return str(value)


def integer(value: Any, low: int, high: int) -> int:
    """An integer in ``[low, high]``; TOML booleans are refused (``bool`` is an ``int``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {kind(value)}")
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}, not {value}")
    return value


def app_list(value: Any) -> tuple[str, ...]:
    """``app``: one ``"module[:attribute]"`` or a non-empty list of them."""
    specs = value if isinstance(value, list) else [value]
    if not specs:
        raise ValueError("must name at least one module")
    for spec in specs:
        if not isinstance(spec, str) or not _APP_SPEC.fullmatch(spec):
            raise ValueError(f"{spec!r} is not \"module\" or \"module:attribute\"")
    return tuple(specs)


def broker(value: Any) -> str:
    """``"embedded"`` or ``kafka://h:p[,h:p]`` (bare ``h:p`` is normalised to a URL)."""
    text = string(value).strip()
    if text == EMBEDDED:
        return text
    hosts = text.removeprefix("kafka://")
    if "://" in hosts:
        raise ValueError(f"{text!r}: only kafka:// URLs or \"embedded\" are supported")
    for hostport in hosts.split(","):
        match = _HOST_PORT.fullmatch(hostport.strip())
        if not match or not 0 < int(match.group(2)) < 65536:
            raise ValueError(f"{text!r} is not \"embedded\" or kafka://host:port[,host:port]")
    return "kafka://" + ",".join(h.strip() for h in hosts.split(","))


def positive_duration(value: Any) -> float:
    """Seconds > 0: an interval or timeout of zero would spin or never wait."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def duration(value: Any) -> float:
    """Seconds >= 0."""
    return parse_duration(value)


def positive_size(value: Any) -> int:
    """Bytes > 0 (a limit of zero would restart an instance forever)."""
    nbytes = parse_size(value)
    if nbytes <= 0:
        raise ValueError("must be greater than zero")
    return nbytes


def ring_size(value: Any) -> int:
    """Ring bytes: big enough for real records, small enough to map per instance."""
    nbytes = parse_size(value)
    if not MIN_RING_SIZE <= nbytes <= MAX_RING_SIZE:
        raise ValueError(f"must be between 64KiB and 1GiB, not {nbytes} bytes")
    return nbytes


def absolute_path(value: Any) -> Path:
    """An absolute path (``~`` expanded): relative ones would depend on the cwd."""
    text = nonempty_string(value)
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        raise ValueError(f"{text!r} must be an absolute path")
    return path


def log_level(value: Any) -> str:
    """A ``logging`` level name, any case, returned upper-case."""
    level = string(value).upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}"
                         + did_you_mean(level, LOG_LEVELS))
    return level


def choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    """A parser accepting exactly one of ``choices``, with a did-you-mean."""
    def parse(value: Any) -> str:
        text = string(value)
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}"
                             + did_you_mean(text, choices))
        return text
    return parse


def topic_name(value: Any) -> str:
    """A name Kafka accepts for a topic (``[A-Za-z0-9._-]``, 1..249)."""
    text = string(value)
    if not _TOPIC_NAME.fullmatch(text) or text in (".", ".."):
        raise ValueError(f"{text!r} is not a valid Kafka topic name")
    return text
