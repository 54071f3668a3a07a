"""Sizes and durations as operators write them: ``"4MiB"``, ``"512KiB"``, ``"30s"``.

Kept apart from ``config.py`` because the CLI and the metrics code print the same
units back; the parsers raise ``ValueError`` with a reason only, and the caller adds
the config key it was reading.
"""

from __future__ import annotations

import math
import re

_SIZE_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_UNITS: dict[str, float] = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAX_SECONDS = 366 * 86400.0
_NUMBER_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_size(value: object) -> int:
    """Bytes from an int or a string such as ``"4MiB"`` (KiB = 1024, KB = 1000).

    Raises ``ValueError`` naming what was wrong; negative and fractional byte
    counts are refused because a ring or a memory limit cannot be either.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"must be a size such as 4194304 or \"4MiB\", not {kind(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    match = _NUMBER_UNIT.fullmatch(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size (use e.g. \"4MiB\", \"512KiB\", \"1GB\")")
    digits = match.group(1)
    if "." not in digits:
        return int(digits) * _SIZE_UNITS[unit]
    number = float(digits) * _SIZE_UNITS[unit]
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(number)


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"30s"``, ``"500ms"``, ``"2m"``, ``"1h"``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be a duration such as 30 or \"30s\", not {kind(value)}")
    if isinstance(value, str):
        match = _NUMBER_UNIT.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _DURATION_UNITS:
            raise ValueError(f"{value!r} is not a duration (use e.g. \"30s\", \"500ms\", \"2m\")")
        seconds = float(match.group(1)) * _DURATION_UNITS[unit]
    else:
        seconds = float(value) if abs(value) < 1e300 else math.inf
    if not math.isfinite(seconds) or seconds < 0 or seconds > _MAX_SECONDS:
        raise ValueError("must be a non-negative duration of at most a year")
    return seconds


def format_size(nbytes: int) -> str:
    """The largest binary unit that shows ``nbytes`` exactly (``4194304`` → ``"4MiB"``)."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = _SIZE_UNITS[unit.lower()]
        if nbytes and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return f"{nbytes}B"


def kind(value: object) -> str:
    """A TOML-flavoured name for a value's type, for error messages."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)
