"""The data path's two per-message loops (compiled and pure Python), for tests that
run on both: ``LOOPS`` as pytest params, the compiled one skipped where it was not
built (``pip install`` builds it; the skip says so)."""

from __future__ import annotations

import pytest

from supervisor.transport import runscan

try:
    from supervisor.transport._runscan import scan_run as _compiled
except ImportError:  # not built: only the fallback runs
    _compiled = None

LOOPS = [
    pytest.param(runscan.scan_run_py, id="pure-python"),
    pytest.param(_compiled, id="compiled", marks=pytest.mark.skipif(
        _compiled is None, reason="supervisor/transport/_runscan not built (pip install -e .)")),
]
