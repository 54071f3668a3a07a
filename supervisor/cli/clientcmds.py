"""What ``agentd status|reload|stop`` do: talk to a running daemon over its control socket.

The daemon is found through its config file (``-c``/``AGENTD_CONFIG``): the file's
``state_dir`` (or its default, which depends only on the user and the file's name)
holds ``control.sock``. Client commands never need the daemon's environment, so an
operator's shell finds a systemd-run daemon by pointing at the same file.

Every failure is a :class:`ClientError` with one sentence; the CLI prints it and
exits non-zero (``EXIT_NOT_RUNNING`` when no daemon answers, as LSB ``status`` does).
"""

from __future__ import annotations

import time
from typing import Any

from supervisor.cli.control_client import request
from supervisor.config.loader import Config, ConfigError, load_config
from supervisor.daemon.ops.control import ControlError

__all__ = ["ClientError", "daemon_broker", "format_status", "load_client_config",
           "reload_daemon", "send_command", "stop_daemon"]

EXIT_NOT_RUNNING = 3


class ClientError(Exception):
    """A client command failed; ``exit_code`` is what the CLI exits with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load_client_config(path: str | None) -> Config:
    """The config that names the daemon; a ``ClientError`` (exit 2) when missing or bad."""
    if not path:
        raise ClientError("which daemon? give -c CONFIG or set AGENTD_CONFIG", 2)
    try:
        return load_config(path)
    except ConfigError as exc:
        raise ClientError(f"config error: {exc}", 2) from None


def send_command(config: Config, cmd: str, timeout: float = 5.0) -> dict[str, Any]:
    """One control command; its reply (``"ok": true``) or a ``ClientError``."""
    try:
        reply = request(config.state_dir, cmd, timeout=timeout)
    except ControlError as exc:
        code = EXIT_NOT_RUNNING if "not running" in str(exc) else 1
        raise ClientError(str(exc), code) from None
    if not reply.get("ok"):
        raise ClientError(f"agentd refused {cmd!r}: {reply.get('error', 'no reason given')}")
    return reply


def daemon_broker(config: Config) -> str:
    """Bootstrap servers of the daemon's Kafka: the config's, or for ``broker =
    "embedded"`` the address the daemon's in-memory broker got (asked over the socket)."""
    if config.bootstrap_servers:
        return config.bootstrap_servers
    try:
        broker = send_command(config, "status").get("broker")
    except ClientError as exc:
        raise ClientError(f"the embedded broker lives inside the daemon: {exc}",
                          exc.exit_code) from None
    if not broker:
        raise ClientError("the daemon has not started its embedded broker yet; retry")
    return str(broker)


def stop_daemon(config: Config, wait: bool, timeout: float) -> dict[str, Any]:
    """Ask for a graceful stop (as SIGTERM); with ``wait``, return once the socket is
    gone (the daemon removes it as its very last step) or fail after ``timeout``."""
    reply = send_command(config, "stop")
    if not wait:
        return reply
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request(config.state_dir, "status", timeout=2.0)
        except ControlError as exc:
            if "not running" in str(exc):
                return reply
        time.sleep(0.2)
    raise ClientError(f"agentd is still running {timeout:g}s after 'stop' "
                      f"(shutdown_timeout is {config.shutdown_timeout:g}s)")


def reload_daemon(config: Config, wait: bool, timeout: float) -> str:
    """Ask for a reload (as SIGHUP); with ``wait``, return its outcome once the
    daemon's reload count moves, raising ``ClientError`` if it was refused."""
    before = send_command(config, "status").get("reload", {}).get("reloads", 0) \
        if wait else 0
    send_command(config, "reload")
    if not wait:
        return "reload requested; `agentd status` shows its outcome"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = send_command(config, "status").get("reload", {})
        if state.get("reloads", 0) > before and state.get("state") != "reloading":
            if state.get("state") == "failed":
                raise ClientError(f"reload refused, the old code keeps running: "
                                  f"{state.get('last_error')}")
            return "reloaded"
        time.sleep(0.2)
    raise ClientError(f"reload not finished after {timeout:g}s; `agentd status` shows it")


# ---------------------------------------------------------------- status table


def _leader_note(leader: bool | None) -> str:
    """Whether this daemon runs the group's on_leader tasks (nothing if the app has none)."""
    return "" if leader is None else " (leader)" if leader else " (not leader)"


def format_status(doc: dict[str, Any]) -> str:
    """The human view of a status document (the JSON one is ``--json``)."""
    reload = doc.get("reload") or {}
    last = doc.get("last_error")
    lines = [
        f"agentd {doc.get('version', '?')} (pid {doc.get('pid')}) {doc.get('state')}, "
        f"up {_duration(doc.get('uptime_s') or 0)}, config {doc.get('config')}",
        f"broker {doc.get('broker')}{' (embedded)' if doc.get('embedded') else ''}, "
        f"group {doc.get('group_id')}{_leader_note(doc.get('leader'))}, "
        f"lag {doc.get('lag')}, "
        f"{doc.get('processing_guarantee', 'at_least_once')}",
        f"reload: {reload.get('state')} ({reload.get('reloads', 0)} done)"
        + (f", last error: {reload['last_error']}" if reload.get("last_error") else ""),
        "last error: " + (f"{_clock(last['at'])} {last['message']}" if last else "none"),
        "",
    ]
    lines += _table(["AGENT", "INSTANCES", "PROCESSED", "ERRORS", "IN FLIGHT", "RESTARTS",
                     "LAG"],
                    [[a["name"], a["instances"], a["processed"], a["errors"], a["in_flight"],
                      a["restarts"], a["lag"]] for a in doc.get("agents", [])])
    lines.append("")
    lines += _table(["INSTANCE", "PID", "STATE", "PROCESSED", "IN FLIGHT", "RESTARTS", "RSS",
                     "CPU%", "PARTITIONS"],
                    [[f"{i['agent']}[{i['index']}]", i["pid"] or "-", i["state"],
                      i["processed"], i["in_flight"], i["restarts"], _size(i["rss_bytes"]),
                      "-" if i["cpu_percent"] is None else f"{i['cpu_percent']:.0f}",
                      _partition_list(i["partitions"])]
                     for i in doc.get("instances", [])])
    transactions = [i for i in doc.get("instances", []) if "transaction" in i]
    if transactions:
        lines.append("")
        lines += _table(["TRANSACTIONS", "COMMITTED", "ABORTED", "HELD RECORDS", "OPEN FOR"],
                        [[f"{i['agent']}[{i['index']}]", i["transaction"]["commits"],
                          i["transaction"]["aborted"], i["transaction"]["held_records"],
                          _age(i["transaction"]["open_age_s"])] for i in transactions])
    if doc.get("tables"):
        lines.append("")
        lines += _table(["TABLE", "KEYS", "DISK", "CHANGELOG OFFSET", "LAG", "INSTANCE",
                         "STATE"], [_table_row(row) for row in doc["tables"]])
    return "\n".join(lines)


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def _table_row(row: dict[str, Any]) -> list[Any]:
    """One table partition's copy; ``~`` marks RocksDB's estimated key count."""
    owner = "-" if row.get("instance") is None else f"{row.get('agent')}[{row['instance']}]"
    keys = f"~{row['keys']}" if row.get("keys_estimated") else row.get("keys")
    return [f"{row['table']}[{row['partition']}]", keys, _size(row.get("bytes")),
            row.get("changelog_offset"), row.get("changelog_lag"), owner, row["state"]]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    out = []
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1], strict=True)]
        out.append("  ".join([first, *rest, row[-1]]).rstrip())
    return out


def _partition_list(parts: list[str]) -> str:
    """``topic:0,1,2`` per topic, so a wide assignment stays on one line."""
    by_topic: dict[str, list[str]] = {}
    for part in parts:
        topic, _, number = part.rpartition(":")
        by_topic.setdefault(topic, []).append(number)
    return " ".join(f"{topic}:{','.join(numbers)}" for topic, numbers in by_topic.items()) \
        or "-"


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))

