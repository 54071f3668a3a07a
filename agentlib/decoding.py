"""Raw record → :class:`~agentlib.events.Event`: the topic's codecs and types applied.

The seam decodes every fed record before the agent sees it; the test context decodes
a record it could not get back from the agent. Both go through here, so what an
agent receives does not depend on how it is run. A request's envelope or headers are
split off into ``reply_to``/``correlation_id`` (:mod:`agentlib.reqrep`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentlib import codecs
from agentlib.events import Event, Ticket, new_event
from agentlib.rawrecord import RawRecord
from agentlib.records import Record
from agentlib.reqrep import split_request
from agentlib.topics import Topic, _as_type

__all__ = ["Decoder", "decode_event", "event_decoder"]

#: (record, its ticket or None) → the event; what :func:`event_decoder` makes.
Decoder = Callable[[RawRecord, "Ticket | None"], Event[Any]]


def decode_event(topic: Topic, record: RawRecord, ticket: Ticket | None = None
                 ) -> Event[Any]:
    """``record`` decoded with ``topic``'s schema; a request's envelope or headers are
    split off into ``reply_to``/``correlation_id``. Raises what the codec or the
    Record raises for bytes that do not fit."""
    headers = dict(record.headers)
    payload, reply_to, correlation_id = split_request(topic.load_value(record.value), headers)
    return Event(topic.decode_key(record.key), topic.decode_value(payload), headers, record,
                 reply_to=reply_to, correlation_id=correlation_id, ticket=ticket)


def event_decoder(topic: Topic) -> Decoder:
    """:func:`decode_event` for ``topic`` with its codecs and types looked up once.

    The host decodes every fed record with one of these (built at the first record of
    each topic): the same steps in the same order, without resolving the codecs, the
    key/value types and the request envelope per record. Raises what resolving a
    codec raises (an unknown serializer name).
    """
    key_codec = codecs.get_codec(topic._key_codec())
    value_codec = codecs.get_codec(topic._value_codec())
    value_loads = value_codec.loads
    key_type, value_type = topic.key_type, topic.value_type
    # Without a value_type, decode_known walks the payload for Records (``__faust``),
    # rebuilding every dict and list (~1.5 us for a small event). JSON text that holds
    # neither "__faust" nor an escape (which could spell it) has none: skip the walk.
    json_values = value_type is None and value_codec is codecs.get_codec("json")
    raw_key = key_type is None and key_codec is codecs.get_codec("raw")
    key_loads = key_codec.loads
    model: Any = value_type if isinstance(value_type, type) and \
        issubclass(value_type, Record) else None
    from_data: Any = None
    if model is not None:
        try:
            from_data = model._from_data_function()
        except Exception:  # annotations that do not resolve: from_data raises per record
            from_data = model.from_data

    def decode(record: RawRecord, ticket: Ticket | None = None) -> Event[Any]:
        headers = dict(record.headers) if record.headers else {}
        data = record.value
        payload = None if data is None else value_loads(data)
        # JSON text that holds neither "__faust" nor an escape has no envelope or Record
        plain = json_values and type(data) is bytes and b"__faust" not in data \
            and b"\\u" not in data
        if headers or (not plain and isinstance(payload, dict) and "__faust" in payload):
            payload, reply_to, correlation_id = split_request(payload, headers)
        else:
            reply_to = correlation_id = None
        key = record.key
        if key is not None and not raw_key:
            key = _as_type(key_type, key_loads(key))
        if from_data is None:
            value = payload if plain else _as_type(value_type, payload)
        elif type(payload) is dict:  # the usual case, without the isinstance
            value = from_data(payload)
        else:
            value = payload if isinstance(payload, model) else from_data(payload)
        return new_event(key, value, headers, record, reply_to, correlation_id, ticket)
    return decode
