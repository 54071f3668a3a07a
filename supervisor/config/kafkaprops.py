"""``[kafka]`` checked the way the clients will check it: by librdkafka itself.

confluent-kafka refuses an unknown property or a bad value when a client is *built*
(``KafkaException`` from the constructor), before any connection. ``agentd check`` and
``agentd start`` build one consumer with the table (no ``bootstrap.servers``, so it
never connects; closed at once) and turn the refusal into a one-line ``ConfigError``
naming the key, instead of the traceback ``agentd start`` died with when its real
consumer was built. A consumer, because the daemon's consumer gets every ``[kafka]``
key (producers and admin clients get only the connection keys); librdkafka accepts,
with a warning, a producer property on a consumer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from supervisor.config.loader import ConfigError

__all__ = ["validate_kafka"]

_PROPERTY = re.compile(r'property:? "([^"]+)"')


class _Quiet:
    """librdkafka's log lines while building the throw-away client (warnings about
    producer properties on a consumer): not this check's business."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        pass


def validate_kafka(kafka: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` at ``kafka."<property>"`` if librdkafka refuses ``kafka``."""
    if not kafka:
        return
    from confluent_kafka import Consumer, KafkaError, KafkaException

    try:
        consumer = Consumer({"group.id": "agentd-check", **kafka, "logger": _Quiet()})
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if isinstance(error, KafkaError) else str(error)
        found = _PROPERTY.search(reason)
        name = found.group(1) if found else None
        key = f'kafka."{name}"' if name in kafka else "kafka"
        if name is not None and reason.startswith("No such configuration property"):
            reason = "no such librdkafka property (see librdkafka's CONFIGURATION.md)"
        raise ConfigError(key, reason) from None
    consumer.close()
