"""The zygote protocol: how the daemon asks a zygote for instances.

A ``SOCK_SEQPACKET`` socketpair, one JSON object per packet; ring fds travel with a
fork request as ``SCM_RIGHTS``. Zygote → daemon: ``ready`` (the agents), ``failed``
(the app would not import), ``forked`` (pid), ``fork_failed``, ``exited`` (pid, wait
status). Daemon → zygote: ``fork``. Both sides import this module and nothing of each
other: the daemon execs :data:`ZYGOTE_MODULE` by name.
"""

from __future__ import annotations

__all__ = ["MAX_PACKET", "ZYGOTE_MODULE"]

#: The largest packet either side reads (an app's agent list; a fork's settings).
MAX_PACKET = 1 << 20
#: What the daemon runs as ``python -m ZYGOTE_MODULE FD APP...``.
ZYGOTE_MODULE = "supervisor.instance.zygote"
