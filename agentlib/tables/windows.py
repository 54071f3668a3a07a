"""Windowed tables: ``table.tumbling(size)`` and ``table.hopping(size, step)``.

(Placeholder: the windows themselves are being written; see agentlib/tables/table.py
for the hooks a windowed table uses.)
"""

from __future__ import annotations

from typing import Any

__all__ = ["HoppingWindow", "TumblingWindow", "WindowWrapper"]


class TumblingWindow:
    """Fixed, non-overlapping windows of ``size`` seconds."""

    def __init__(self, size: Any, expires: Any = None) -> None:
        self.size = size
        self.expires = expires


class HoppingWindow:
    """Windows of ``size`` seconds starting every ``step`` seconds."""

    def __init__(self, size: Any, step: Any, expires: Any = None) -> None:
        self.size = size
        self.step = step
        self.expires = expires


class WindowWrapper:
    """A table seen through a window definition."""

    def __init__(self, table: Any, window: Any) -> None:
        self.table = table
        self.window = window
