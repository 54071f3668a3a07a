"""The life of ``agentd dev-broker``: start a broker, print one line, stop on a signal.

Kept apart from the brokers themselves so that the real and the embedded broker
behave the same for a script that starts one and reads the first stdout line:
``bootstrap=HOST:PORT`` alone on stdout once it serves, clean-up on SIGINT/SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

from supervisor.devbrokers.devbroker import (
    DevBroker,
    DevBrokerError,
    UsageProblem,
    create_topics,
    kafka_version,
)

__all__ = ["serve_embedded", "serve_kafka", "serve_until_signalled"]


class _Stop(BaseException):
    """Raised by the SIGINT/SIGTERM handler; unwinds to the cleanup in ``finally``."""


def serve_until_signalled(start: Callable[[], str], stop: Callable[[], None],
                          alive: Callable[[], bool]) -> None:
    """Start a broker, print ``bootstrap=HOST:PORT`` alone on stdout, stop on SIGINT/SIGTERM.

    Shared by the real and the embedded broker so that both behave the same for a
    script that reads the first stdout line. A broker that dies by itself is an error.
    """

    def on_term(signum: int, frame: object) -> None:
        raise _Stop

    # Both signals are handled explicitly: a shell starts background jobs with SIGINT
    # ignored, and Python then never turns it into KeyboardInterrupt.
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        bootstrap = start()
        print(f"bootstrap={bootstrap}", flush=True)
        while alive():
            time.sleep(0.2)
        raise DevBrokerError("the broker exited unexpectedly")
    except _Stop:
        pass
    finally:
        for sig in previous:  # a second signal must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_kafka(topics: dict[str, int], *, partitions: int, port: int | None,
                data_dir: str | None) -> None:
    """``agentd dev-broker``: a real broker, ``topics`` (0 partitions = ``partitions``)
    created before the bootstrap line is printed, so a script may use them at once."""
    broker = DevBroker(partitions=partitions, port=port, data_dir=data_dir)

    def start() -> str:
        bootstrap = broker.start()
        if topics:
            create_topics(bootstrap, {name: n or partitions for name, n in topics.items()})
        print(f"agentd dev-broker: Apache Kafka {kafka_version()} ready, warnings go to "
              f"{broker.log_path}; Ctrl-C stops it", file=sys.stderr, flush=True)
        return bootstrap

    serve_until_signalled(start, broker.stop,
                          lambda: broker.process is not None and broker.process.poll() is None)


def serve_embedded(topics: dict[str, int], *, partitions: int | None, port: int | None,
                   data_dir: str | None) -> None:
    """``agentd dev-broker --embedded``: librdkafka's in-memory mock cluster."""
    from supervisor.devbrokers.embedded import (
        AUTO_CREATE_PARTITIONS,
        EmbeddedBroker,
        EmbeddedBrokerError,
    )

    if port is not None or data_dir is not None:
        raise UsageProblem("--port and --data-dir do not apply to --embedded")
    if partitions is not None and partitions != AUTO_CREATE_PARTITIONS:
        raise UsageProblem(f"the embedded broker auto-creates topics with "
                           f"{AUTO_CREATE_PARTITIONS} partitions; use --topic NAME:N instead")
    try:
        broker = EmbeddedBroker({name: n or AUTO_CREATE_PARTITIONS
                                 for name, n in topics.items()})
    except (EmbeddedBrokerError, ValueError) as exc:
        raise DevBrokerError(str(exc)) from None
    serve_until_signalled(lambda: broker.bootstrap, broker.close, lambda: True)
