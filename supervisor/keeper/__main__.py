"""``python -m supervisor.keeper``: the table keeper's process (started by the daemon).

Reads its spec as the first line of stdin, then standby sets, one JSON line each; ends
when stdin closes (the daemon stopped, or died: the pipe closes with it).
"""

from __future__ import annotations

import json
import logging
import os
import sys

from supervisor.keeper.copies import Keeper


def main() -> int:
    logging.basicConfig(level=os.environ.get("AGENTD_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s agentd-keeper: %(message)s",
                        stream=sys.stderr)
    line = sys.stdin.readline()
    if not line:
        return 0
    keeper = Keeper(json.loads(line))
    try:
        keeper.run(sys.stdin, sys.stdout)
    finally:
        keeper.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
