"""Faust's ``faust.models.fields``: the field classes (``agentlib.fieldtypes``)."""

from agentlib.fields import FieldDescriptor
from agentlib.fieldtypes import (
    BooleanField,
    BytesField,
    DatetimeField,
    DecimalField,
    Field,
    FloatField,
    IntegerField,
    NumberField,
    StringField,
)

__all__ = ["BooleanField", "BytesField", "DatetimeField", "DecimalField", "Field",
           "FieldDescriptor", "FloatField", "IntegerField", "NumberField", "StringField"]
