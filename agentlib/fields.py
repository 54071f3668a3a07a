"""A Record's declared field: its class-level descriptor, its default, and its type check.

:mod:`agentlib.records` builds one :class:`FieldDescriptor` per annotated attribute
of a Record class; ``Stream.group_by`` takes one as the new key. What a field needs
on its own (the "no default" marker, copying a mutable default, recognising a
``ClassVar``, checking a value against the annotation for ``validation=True``) lives
here with it, apart from the Record machinery that reads and writes whole messages.
"""

from __future__ import annotations

import types
import typing
from typing import Any

__all__ = ["MISSING", "FieldDescriptor", "ValidationError", "conforms", "copy_default",
           "is_classvar"]

#: The default of a field declared without one (it is required).
MISSING: Any = object()


class ValidationError(ValueError):
    """A Record with ``validation=True`` was built from a value of the wrong type."""


class FieldDescriptor:
    """One declared field of a Record class, as seen from the class.

    ``model`` is the Record class it belongs to. Usable as a ``group_by`` key
    (``getattr(record)`` reads the field) and carries what decoding needs: the
    annotation and the default.
    """

    def __init__(self, model: type, field: str, type_: Any, default: Any,
                 spec: Any = None) -> None:
        self.model = model
        self.field = field
        self.type = type_
        self.default = default
        #: the Faust field class instance it was declared with (``agentlib.fieldtypes``)
        self.spec = spec

    @property
    def required(self) -> bool:
        """True when the field has no default."""
        return self.default is MISSING

    @property
    def ident(self) -> str:
        """``Model.field``, as Faust's: the default ``group_by`` name."""
        return f"{self.model.__name__}.{self.field}"

    def getattr(self, obj: Any) -> Any:
        """The field's value in ``obj``."""
        return getattr(obj, self.field)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        # Only reached when the instance lacks the attribute: a default never set.
        if self.default is MISSING:
            raise AttributeError(self.field)
        return self.default

    def __repr__(self) -> str:
        type_name = getattr(self.type, "__name__", repr(self.type))
        return f"<FieldDescriptor: {self.model.__name__}.{self.field}: {type_name}>"


def conforms(value: Any, expected: Any) -> bool:
    """Whether ``value`` fits the annotation ``expected`` (``validation=True``).

    Unions and ``Optional`` accept any member; generic containers are checked by their
    container type (``list[int]`` accepts any list); ``int`` refuses ``bool`` and
    ``float`` accepts ``int``. What it cannot judge (``Literal``, type variables) passes.
    """
    if expected is Any or expected is object:
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, option) for option in typing.get_args(expected))
    if expected is None or expected is type(None):
        return value is None
    if origin is not None:
        expected = origin
    if not isinstance(expected, type):
        return True
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, float | int) and not isinstance(value, bool)
    return isinstance(value, expected)


def copy_default(default: Any) -> Any:
    """``default`` for one new instance: a mutable one is copied, never shared."""
    if isinstance(default, list | dict | set):
        return type(default)(default)
    return default


def is_classvar(annotation: Any) -> bool:
    """Whether ``annotation`` declares a class variable (not a field), even as a string."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))
