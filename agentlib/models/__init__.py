"""Faust's ``faust.models`` import path: ``from faust.models.fields import StringField``
becomes ``from agentlib.models.fields import StringField``."""

from agentlib.fields import FieldDescriptor
from agentlib.fieldtypes import StringField
from agentlib.records import Record

__all__ = ["FieldDescriptor", "Record", "StringField"]
