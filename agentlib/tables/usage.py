"""Which tables an agent uses, read from its code (no Faust declaration says so).

agentd needs to know before the first record: the daemon refuses a table under an
ordering that gives one partition to several instances, creates the changelog topics,
and an instance opens (and catches up) its partitions' shards before it hands the
agent a record of them. Faust learns it only when the agent touches the table.

The scan follows the agent function's global names, closures and nested functions
(lambdas, inner ``def``s), and the functions of the same module it calls, to any depth.
A table reached another way (an attribute of an object, a function of another module)
is not found; it still works, but its shard is opened at the first access, which
then waits for the catch-up.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

from agentlib.tables.table import Table
from agentlib.tables.windows import WindowWrapper

__all__ = ["tables_used_by"]


def tables_used_by(fun: Any) -> list[Table]:
    """The tables ``fun`` (an agent's function) refers to, in first-seen order."""
    found: dict[int, Table] = {}
    module = getattr(fun, "__module__", None)
    seen: set[int] = set()
    pending = [fun]
    while pending:
        function = pending.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        for value in _referenced(function):
            table = _table_of(value)
            if table is not None:
                found.setdefault(id(table), table)
            elif isinstance(value, types.FunctionType) and value.__module__ == module:
                pending.append(value)
    return list(found.values())


def _table_of(value: Any) -> Table | None:
    if isinstance(value, Table):
        return value
    if isinstance(value, WindowWrapper):
        table = getattr(value, "table", None)
        return table if isinstance(table, Table) else None
    return None


def _referenced(function: Any) -> Iterator[Any]:
    """Globals, closure values and (through nested code) globals of inner functions."""
    code = getattr(function, "__code__", None)
    if code is None:
        return
    namespace = getattr(function, "__globals__", {})
    for cell in getattr(function, "__closure__", None) or ():
        try:
            yield cell.cell_contents
        except ValueError:  # an empty cell
            continue
    for name in _names(code):
        if name in namespace:
            yield namespace[name]


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)
