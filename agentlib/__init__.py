"""agentlib: the Faust agent API for agentd (``import agentlib as faust``).

Agent modules written for Faust run unchanged: ``App``, ``Record``, ``StreamT``,
``@app.agent`` with sinks and ``ask``/``map``/``join``, ``@app.command`` with
``agentlib.cli.argument``/``option``. Inside agentd the supervisor owns Kafka
consumption and feeds agents through :mod:`agentlib.seam`; anywhere else an App is a
client (producer and reply consumer, made on first use).
"""

from agentlib import cli, codecs
from agentlib.agents import Agent
from agentlib.app import App, Timer
from agentlib.events import Event, current_event
from agentlib.records import FieldDescriptor, Record, ValidationError
from agentlib.streams import JoinNotSupported, Stream, StreamT
from agentlib.topics import Channel, Topic

__all__ = [
    "Agent", "App", "Channel", "Event", "FieldDescriptor", "JoinNotSupported", "Record",
    "Stream", "StreamT", "Timer", "Topic", "ValidationError", "cli", "codecs",
    "current_event",
]
