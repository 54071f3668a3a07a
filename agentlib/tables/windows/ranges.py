"""Window shapes: which windows a timestamp falls in (Faust's ``HoppingWindow`` and
``TumblingWindow``, with its arithmetic: a window ``(start, end)`` ends at
``start + size - 0.1``, and the same floats make the same stored key every time).
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["HoppingWindow", "Seconds", "TumblingWindow", "WindowRange", "want_seconds"]

#: A duration as Faust takes it: seconds, or a timedelta.
Seconds = float | int | timedelta
#: ``(start, end)`` in seconds; ``end`` is ``start + size - 0.1``, as in Faust.
WindowRange = tuple[float, float]


def want_seconds(value: Seconds, what: str) -> float:
    """``value`` in seconds; a window needs a positive duration."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"window {what} must be seconds or a timedelta, not {value!r}")
    if seconds <= 0:
        raise ValueError(f"window {what} must be positive, not {value!r}")
    return seconds


class HoppingWindow:
    """Windows of ``size`` seconds starting every ``step`` seconds (they overlap when
    ``step < size``); ``expires``: how long after it a window may still be written."""

    def __init__(self, size: Seconds, step: Seconds, expires: Seconds | None = None) -> None:
        self.size = want_seconds(size, "size")
        self.step = want_seconds(step, "step")
        self.expires = want_seconds(expires, "expires") if expires else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: size={self.size} step={self.step}>"

    def ranges(self, timestamp: float) -> list[WindowRange]:
        """Every window that ``timestamp`` falls in, oldest first."""
        first = self._first_start(timestamp)
        count = math.floor(self.size / self.step + 1e-9)
        return [self._range(first, index) for index in range(count)]

    def current(self, timestamp: float) -> WindowRange:
        """The newest window holding ``timestamp``."""
        first = self._first_start(timestamp)
        return self._range(first, math.floor((timestamp - first) / self.step))

    def earliest(self, timestamp: float) -> WindowRange:
        """The oldest window holding ``timestamp``."""
        return self._range(self._first_start(timestamp), 0)

    def delta(self, timestamp: float, d: Seconds) -> WindowRange:
        """The window current ``d`` seconds before ``timestamp``."""
        return self.current(timestamp - want_seconds(d, "delta"))

    def stale(self, end: float, latest: float) -> bool:
        """Whether a window ending at ``end`` has expired at stream time ``latest``."""
        return self.expires is not None and end <= self.stale_before(latest)

    def stale_before(self, latest: float) -> float:
        """Windows ending at or before this have expired at stream time ``latest``."""
        if self.expires is None:
            return -math.inf
        return self.current(latest - self.expires)[0]

    def _first_start(self, timestamp: float) -> float:
        return (timestamp // self.step) * self.step - self.size + self.step

    def _range(self, first: float, index: int) -> WindowRange:
        # One expression for every start, so ranges() and current() give equal floats:
        # the start is part of the stored key.
        start = float(first + self.step * index)
        return (start, start + self.size - 0.1)


class TumblingWindow(HoppingWindow):
    """Fixed, gap-less, non-overlapping windows of ``size`` seconds."""

    def __init__(self, size: Seconds, expires: Seconds | None = None) -> None:
        super().__init__(size, size, expires)
