"""agentlib: the Faust agent API for agentd (``import agentlib as faust``).

Agent modules written for Faust run unchanged: ``App``, ``Record``, ``StreamT``,
``@app.agent`` with sinks and ``ask``/``map``/``join``, ``@app.command`` with
``agentlib.cli.argument``/``option``. Inside agentd the supervisor owns Kafka
consumption and feeds agents through :mod:`agentlib.seam`; anywhere else an App is a
client (producer and reply consumer, made on first use).
"""

import uuid as _uuid
from typing import Any

from agentlib import cli, codecs
from agentlib.agents import Agent
from agentlib.app import App, Timer
from agentlib.codecs import Codec
from agentlib.events import Event, current_event
from agentlib.records import FieldDescriptor, Record, ValidationError
from agentlib.services import Service
from agentlib.streams import JoinNotSupported, Stream, StreamT
from agentlib.tables import GlobalTable, HoppingWindow, Table, TumblingWindow
from agentlib.topics import Channel, Schema, Topic

# Faust's names for the same things, so type annotations from Faust code resolve.
Model = Record
AgentT = Agent
EventT = Event
TopicT = Topic
ChannelT = Channel

_UNSUPPORTED = frozenset({"SetTable", "SetGlobalTable", "SlidingWindow"})


def uuid() -> str:
    """A new random UUID as a string (Faust's ``faust.uuid()``)."""
    return str(_uuid.uuid4())


def __getattr__(name: str) -> Any:
    if name in _UNSUPPORTED:
        raise AttributeError(
            f"agentlib has no {name}: agentd supports Table, GlobalTable and tumbling "
            f"and hopping windows, not {name}")
    raise AttributeError(f"module 'agentlib' has no attribute {name!r}")


__all__ = [
    "Agent", "AgentT", "App", "Channel", "ChannelT", "Codec", "Event", "EventT",
    "FieldDescriptor", "GlobalTable", "HoppingWindow", "JoinNotSupported", "Model",
    "Record", "Schema", "Service", "Stream", "StreamT", "Table", "Timer", "Topic", "TopicT",
    "TumblingWindow", "ValidationError", "cli", "codecs", "current_event", "uuid",
]
