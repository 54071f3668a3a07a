"""Faust's field classes (``faust.models.fields``): a field's default and its checks.

``name: str = StringField(max_length=20, trim_whitespace=True)`` in a Record says more
than the annotation: whether the field is required (``required=False`` without a
default makes the default ``None``), how a value is prepared when the record is built
or decoded (``trim_whitespace``), and what ``validate()`` checks beyond the type
(lengths, bounds, decimal places). A Record with ``validation=True`` raises the first
failed check when built, as Faust does. The checks are Faust's, with one difference:
a bound of ``0`` is a bound (Faust skips a falsy ``min_value``/``max_value``).
"""

from __future__ import annotations

import decimal
from typing import Any

from agentlib.fields import MISSING

__all__ = ["BooleanField", "BytesField", "DatetimeField", "DecimalField", "Field",
           "FloatField", "IntegerField", "NumberField", "StringField"]


class Field:
    """A field's options; subclasses add the checks of their kind."""

    #: whether :meth:`prepare` changes values (the Record runs it only then)
    prepares = False

    def __init__(self, *, required: bool = True, default: Any = MISSING,
                 **options: Any) -> None:
        unknown = sorted(set(options) - self._options())
        if unknown:
            raise TypeError(f"{type(self).__name__}: no option {', '.join(unknown)}")
        self.required = required and default is MISSING
        self.default = None if default is MISSING and not required else default
        self.options = options

    def _options(self) -> set[str]:
        return {"coerce", "exclude", "date_parser"}

    def prepare(self, value: Any) -> Any:
        """The value as the record keeps it (called for a value that is not None)."""
        return value

    def problems(self, value: Any) -> list[str]:
        """What is wrong with ``value`` (not None) beyond its type, in words."""
        return []


class StringField(Field):
    def __init__(self, *, max_length: int | None = None, min_length: int | None = None,
                 trim_whitespace: bool = False, allow_blank: bool = False,
                 **options: Any) -> None:
        super().__init__(**options)
        self.max_length, self.min_length = max_length, min_length
        self.trim_whitespace, self.allow_blank = trim_whitespace, allow_blank
        self.prepares = trim_whitespace

    def prepare(self, value: Any) -> Any:
        return value.strip() if self.trim_whitespace and isinstance(value, str) else value

    def problems(self, value: Any) -> list[str]:
        if not isinstance(value, str):
            return []
        found = []
        if not value and not self.allow_blank and self.required:
            found.append("cannot be left blank")
        if self.max_length is not None and len(value) > self.max_length:
            found.append(f"is longer than {self.max_length} characters")
        if self.min_length is not None and len(value) < self.min_length:
            found.append(f"is shorter than {self.min_length} characters")
        return found


class NumberField(Field):
    def __init__(self, *, max_value: Any = None, min_value: Any = None,
                 **options: Any) -> None:
        super().__init__(**options)
        self.max_value, self.min_value = max_value, min_value

    def problems(self, value: Any) -> list[str]:
        if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
            return []
        found = []
        if self.max_value is not None and value > self.max_value:
            found.append(f"is more than {self.max_value}")
        if self.min_value is not None and value < self.min_value:
            found.append(f"is less than {self.min_value}")
        return found


class IntegerField(NumberField):
    pass


class FloatField(NumberField):
    pass


class DecimalField(NumberField):
    def __init__(self, *, max_digits: int | None = None,
                 max_decimal_places: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.max_digits, self.max_decimal_places = max_digits, max_decimal_places

    def problems(self, value: Any) -> list[str]:
        found = super().problems(value)
        if not isinstance(value, decimal.Decimal) or not value.is_finite():
            return found
        _, digits, exponent = value.as_tuple()
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if self.max_decimal_places is not None and places > self.max_decimal_places:
            found.append(f"has more than {self.max_decimal_places} decimal places")
        if self.max_digits is not None and len(digits) > self.max_digits:
            found.append(f"has more than {self.max_digits} digits")
        return found


class BooleanField(Field):
    pass


class DatetimeField(Field):
    pass


class BytesField(Field):
    def __init__(self, *, encoding: str = "utf-8", errors: str = "strict",
                 **options: Any) -> None:
        super().__init__(**options)
        self.encoding, self.errors = encoding, errors
