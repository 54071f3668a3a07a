"""Faust's request/reply protocol, both forms, as pure functions over payloads.

A request names its reply topic and correlation id either in headers
(``Faust-Ag-ReplyTo``/``Faust-Ag-CorrelationId``, agents with
``use_reply_headers=True``, Faust's default) or in a ``@ReqRepRequest`` envelope
around the value. A receiver understands both. Each value yielded for a request goes
back to the reply topic as a ``@ReqRepResponse`` record with a null message key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentlib.codecs import json_dumps
from agentlib.records import Record

__all__ = ["CORRELATION_HEADER", "REPLY_TO_HEADER", "request_envelope", "response_bytes",
           "split_request"]

REPLY_TO_HEADER = "Faust-Ag-ReplyTo"
CORRELATION_HEADER = "Faust-Ag-CorrelationId"
REQUEST_NAMESPACE = "@ReqRepRequest"
RESPONSE_NAMESPACE = "@ReqRepResponse"
# Faust wraps a Record value in subclasses that do not inherit the namespace, so their
# ``ns`` is the class path (seen on the wire from faust-streaming 0.15.3).
MODEL_REQUEST_NAMESPACE = "faust.agents.models.ModelReqRepRequest"
MODEL_RESPONSE_NAMESPACE = "faust.agents.models.ModelReqRepResponse"
_REQUEST_NAMESPACES = frozenset({REQUEST_NAMESPACE, MODEL_REQUEST_NAMESPACE})


def request_envelope(value: Any, reply_to: str, correlation_id: str) -> dict[str, Any]:
    """The ``@ReqRepRequest`` payload wrapping ``value`` (for ``use_reply_headers=False``)."""
    namespace = MODEL_REQUEST_NAMESPACE if isinstance(value, Record) else REQUEST_NAMESPACE
    return {"value": _represent(value), "reply_to": reply_to,
            "correlation_id": correlation_id, "__faust": {"ns": namespace}}


def request_headers(reply_to: str, correlation_id: str) -> list[tuple[str, bytes]]:
    """The two headers that make a message a request (Faust's default form)."""
    return [(REPLY_TO_HEADER, reply_to.encode()),
            (CORRELATION_HEADER, correlation_id.encode())]


def split_request(payload: Any, headers: Mapping[str, bytes]
                  ) -> tuple[Any, str | None, str | None]:
    """(inner payload, reply_to, correlation_id) of a received message.

    An envelope wins over headers (it is what the sender chose explicitly);
    a plain message gives ``(payload, None, None)``.
    """
    if isinstance(payload, dict):
        meta = payload.get("__faust")
        if isinstance(meta, dict) and meta.get("ns") in _REQUEST_NAMESPACES:
            return payload.get("value"), payload.get("reply_to"), payload.get("correlation_id")
    reply_to = headers.get(REPLY_TO_HEADER)
    if reply_to is None:
        return payload, None, None
    correlation_id = headers.get(CORRELATION_HEADER)
    return (payload, reply_to.decode(),
            correlation_id.decode() if correlation_id is not None else None)


def response_bytes(key: Any, value: Any, correlation_id: str | None) -> bytes:
    """The ``@ReqRepResponse`` JSON produced to ``reply_to`` for one yielded value."""
    if isinstance(key, bytes):
        key = key.decode(errors="replace")
    namespace = MODEL_RESPONSE_NAMESPACE if isinstance(value, Record) else RESPONSE_NAMESPACE
    return json_dumps({"key": _represent(key), "value": _represent(value),
                       "correlation_id": correlation_id, "__faust": {"ns": namespace}})


def _represent(value: Any) -> Any:
    return value.to_representation() if isinstance(value, Record) else value
