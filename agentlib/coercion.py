"""Faust's ``coerce=True``/``isodates=True``/``date_parser=``: fields given in another
form become their annotated type.

Faust converts a field when the Record is built (and so when it is decoded) if the
class says ``coerce=True`` (every field of a scalar type) or ``isodates=True``
(``datetime`` fields only); ``date_parser`` replaces the ISO-8601 parser. A ``None``
stays ``None`` in an optional field. Kept apart from :mod:`agentlib.records`, whose
decoding hot path never comes here for a class without these options.
"""

from __future__ import annotations

import datetime
import decimal
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from agentlib.fields import ValidationError

__all__ = ["coerce_fields", "iso_datetime"]

DateParser = Callable[[Any], datetime.datetime]


def iso_datetime(value: Any) -> datetime.datetime:
    """Faust's default ``date_parser``: an ISO-8601 string as a ``datetime``."""
    return datetime.datetime.fromisoformat(value)


def coerce_fields(state: dict[str, Any], hints: Mapping[str, Any], *, coerce: bool,
                  date_parser: DateParser | None, owner: str = "Record") -> None:
    """Convert the values in ``state`` (a Record's ``__dict__``) to their hinted types:
    scalars when ``coerce``, ``datetime``s always (the caller comes here for
    ``isodates``, ``coerce`` or a ``date_parser``). A value that does not convert is a
    :class:`ValidationError` naming ``owner.field`` (a ``ValueError``, which Faust
    raises there)."""
    for name, annotation in hints.items():
        value = state.get(name)
        if value is None:
            continue
        try:
            _convert(state, name, value, _scalar(annotation), coerce, date_parser)
        except (ValueError, TypeError, ArithmeticError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"{owner}.{name}: cannot convert {value!r} "
                                  f"({exc})") from exc


def _convert(state: dict[str, Any], name: str, value: Any, wanted: type | None,
             coerce: bool, date_parser: DateParser | None) -> None:
    if wanted is datetime.datetime:
        if not isinstance(value, datetime.datetime):
            state[name] = (date_parser or iso_datetime)(value)
    elif coerce and wanted is not None and not isinstance(value, wanted):
        state[name] = _coerce(wanted, value)
    elif coerce and wanted is float and isinstance(value, bool | int):
        state[name] = float(value)


def _coerce(wanted: type, value: Any) -> Any:
    if wanted is bool:
        return bool(value)
    if wanted is bytes and isinstance(value, str):
        return value.encode()
    return wanted(value)


def _scalar(annotation: Any) -> type | None:
    """The scalar type a field holds (``Optional[X]`` → ``X``), or None if not one."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(options) != 1:
            return None
        annotation = options[0]
    if annotation in (int, float, str, bool, bytes, decimal.Decimal, datetime.datetime):
        return typing.cast(type, annotation)
    return None
