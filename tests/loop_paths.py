"""The data path's two implementations of its per-message loops (compiled and pure
Python), for tests that run on both: ``LOOPS`` (the run scan) and ``COPY_LOOPS`` (the
ring's record copy) as pytest params, the compiled ones skipped where they were not
built (``pip install`` builds them; the skip says so)."""

from __future__ import annotations

import pytest

from supervisor.transport import runscan

try:
    from supervisor.transport._runscan import copy_records as _compiled_copy
    from supervisor.transport._runscan import scan_run as _compiled
except ImportError:  # not built: only the fallback runs
    _compiled = _compiled_copy = None

_NOT_BUILT = "supervisor/transport/_runscan not built (pip install -e .)"

LOOPS = [
    pytest.param(runscan.scan_run_py, id="pure-python"),
    pytest.param(_compiled, id="compiled", marks=pytest.mark.skipif(
        _compiled is None, reason=_NOT_BUILT)),
]

COPY_LOOPS = [
    pytest.param(runscan.copy_records_py, id="pure-python"),
    pytest.param(_compiled_copy, id="compiled", marks=pytest.mark.skipif(
        _compiled_copy is None, reason=_NOT_BUILT)),
]

#: The compiled copy loop, or None where it was not built.
COMPILED_COPY = _compiled_copy
