"""Default names of agents and Records when their module runs as ``__main__``.

``python -m examples.pow2 square_all`` executes ``examples/pow2.py`` as ``__main__``,
so ``fun.__module__`` says ``__main__``: the agent would be named
``__main__.pow2`` and read topic ``pow2-example-__main__.pow2`` instead of
``pow2-example-examples.pow2.pow2``, which the workers serve, and a Record's
``__faust.ns`` would change the same way. Faust resolves ``__main__`` to the module's
real dotted name; so does this.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["module_name"]


def module_name(module: str) -> str:
    """``module``, with ``__main__`` replaced by the name it is importable under."""
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)                      # python -m package.module
    filename = getattr(main, "__file__", None)
    if not filename:
        return "__main__"                          # REPL, python -c
    path = Path(filename).resolve()
    parts = [path.stem]
    node = path.parent
    while (node / "__init__.py").exists():         # python package/module.py
        parts.insert(0, node.name)
        node = node.parent
    return ".".join(parts)
