"""``Record``: typed message models whose JSON form is byte-identical to Faust's.

A Record on the wire is its fields plus ``"__faust": {"ns": "<namespace>"}`` (the
namespace is ``module.ClassName`` unless the class sets ``namespace=``). Every Record
class registers its namespace so a value decoded without a ``value_type`` still comes
back as the right model, and so nested or polymorphic fields can be rebuilt.

Class attribute access (``BankTransfer.account_id``) yields a :class:`FieldDescriptor`,
which ``Stream.group_by`` accepts as the new key; instance access yields the value
(instance attributes live in ``__dict__``, so the descriptor costs nothing there).

Where Faust has a known gap users asked about, this differs on purpose: nested records
given as plain dicts (no ``__faust``) are rebuilt from the field's annotation.
"""

from __future__ import annotations

import datetime
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from agentlib import codecs
from agentlib.coercion import DateParser, coerce_fields
from agentlib.fields import (
    MISSING,
    FieldDescriptor,
    ValidationError,
    conforms,
    copy_default,
    is_classvar,
)
from agentlib.fieldtypes import Field
from agentlib.naming import module_name

__all__ = ["FieldDescriptor", "Record", "ValidationError", "decode_known", "registry"]

#: ``__faust.ns`` → Record class, for decoding without a declared type.
registry: dict[str, type[Record]] = {}

R = TypeVar("R", bound="Record")
_Converter = Callable[[Any], Any]


def _abstract_init(self: Record, *args: Any, **kwargs: Any) -> None:
    raise NotImplementedError(f"{type(self).__name__} is an abstract model (abstract=True): "
                              f"build one of its subclasses")


class Record:
    """Base class for message models: subclass it with annotated fields.

    Class keywords (as in Faust): ``namespace=`` (the ``__faust.ns``), ``isodates=True``
    (parse ISO strings into ``datetime`` fields), ``coerce=True`` (convert scalar
    fields to their types), ``date_parser=``, ``validation=True`` (type-check fields
    when built), ``serializer=`` (codec name for ``dumps``; default ``json``),
    ``include_metadata=False`` (no ``__faust`` in the wire form), ``abstract=True`` (a
    base class: building one raises ``NotImplementedError``; not registered by
    namespace). ``validation=`` implies ``coerce=True``, as in Faust.
    """

    _fields: ClassVar[dict[str, FieldDescriptor]] = {}
    _namespace: ClassVar[str] = ""
    _isodates: ClassVar[bool] = False
    _validation: ClassVar[bool] = False
    _serializer: ClassVar[str] = "json"
    _coerce: ClassVar[bool] = False
    _date_parser: ClassVar[DateParser | None] = None
    _include_metadata: ClassVar[bool] = True
    _converters: ClassVar[list[tuple[str, _Converter | None]] | None] = None
    _resolved_hints: ClassVar[dict[str, Any] | None] = None
    #: The field names when no field needs converting (set with ``_converters``).
    _plain_fields: ClassVar[tuple[str, ...] | None] = None
    #: Set with ``_converters``: plain fields, and nothing to run after they are set
    #: (no isodates, no validation, no ``__post_init__`` of its own).
    _bare: ClassVar[bool] = False
    #: fields declared with a Faust field class: (name, its options), checked by
    #: ``validate()``; those whose values it prepares (``trim_whitespace``)
    _checked: ClassVar[tuple[tuple[str, Field], ...]] = ()
    _prepared: ClassVar[tuple[tuple[str, Field], ...]] = ()
    #: built and decoded records go through ``_parse_isodates`` (any converting option)
    _converts: ClassVar[bool] = False

    def __init_subclass__(cls, *, namespace: str | None = None, isodates: bool | None = None,
                          validation: bool | None = None, serializer: str | None = None,
                          coerce: bool | None = None, date_parser: DateParser | None = None,
                          include_metadata: bool | None = None, abstract: bool = False,
                          **kwargs: Any) -> None:
        if kwargs:  # Faust's other options (decimals=, polymorphic_fields=...)
            raise TypeError(f"{cls.__name__}: agentlib.Record has no class option "
                            f"{', '.join(sorted(kwargs))} (Faust's; see docs/decisions.md)")
        super().__init_subclass__()
        for option, given in (("_coerce", coerce), ("_date_parser", date_parser),
                              ("_include_metadata", include_metadata)):
            if given is not None:
                setattr(cls, option, given)
        cls._namespace = namespace or f"{module_name(cls.__module__)}.{cls.__qualname__}"
        if isodates is not None:
            cls._isodates = isodates
        if validation is not None:  # Faust: validation implies coerce
            cls._validation = validation
            cls._coerce = True
        if serializer is not None:
            cls._serializer = serializer
        fields: dict[str, FieldDescriptor] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "_fields", {}) if issubclass(base, Record) else {})
        for name, annotation in inspect.get_annotations(cls).items():
            if name.startswith("_") or is_classvar(annotation):
                continue
            default, spec = cls.__dict__.get(name, MISSING), None
            if isinstance(default, Field):  # Faust's StringField(...) and kin
                default, spec = default.default, default
            elif isinstance(default, FieldDescriptor):
                default, spec = default.default, default.spec
            fields[name] = FieldDescriptor(cls, name, annotation, default, spec)
        for name, descriptor in fields.items():
            if descriptor.model is not cls:
                descriptor = FieldDescriptor(cls, name, descriptor.type, descriptor.default,
                                             descriptor.spec)
                fields[name] = descriptor
            setattr(cls, name, descriptor)
        cls._fields = fields
        cls._checked = tuple((n, f.spec) for n, f in fields.items() if f.spec is not None)
        cls._prepared = tuple((n, s) for n, s in cls._checked if s.prepares)
        cls._converts = bool(cls._isodates or cls._coerce or cls._date_parser
                             or cls._prepared)
        cls._converters = None  # resolved on first decode: annotations may be forward refs
        cls._plain_fields = None
        cls._bare = False
        if abstract:  # Faust's: a base class only, never built nor found by namespace
            cls.__init__ = _abstract_init  # type: ignore[method-assign]
            return
        if cls.__init__ is _abstract_init:  # a concrete subclass of an abstract one
            cls.__init__ = Record.__init__  # type: ignore[method-assign]
        registry[cls._namespace] = cls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} positional "
                            f"arguments but {len(args)} were given")
        values = dict(zip(fields, args, strict=False))
        for name, value in kwargs.items():
            if name not in fields:
                raise TypeError(f"{type(self).__name__} got unexpected argument: {name}")
            if name in values:
                raise TypeError(f"{type(self).__name__} got multiple values for {name}")
            values[name] = value
        missing = [name for name, field in fields.items()
                   if field.required and name not in values]
        if missing:
            raise TypeError(f"{type(self).__name__} missing required fields: "
                            f"{', '.join(missing)}")
        state = self.__dict__
        for name, field in fields.items():
            value = values.get(name, MISSING)
            state[name] = copy_default(field.default) if value is MISSING else value
        if self._converts:
            _parse_isodates(self)
        if self._validation:
            self.validate_or_raise()
        self.__post_init__()

    def __post_init__(self) -> None:
        """Hook for subclasses, called after the fields are set (as in Faust)."""

    # -- wire form ------------------------------------------------------------------

    def asdict(self) -> dict[str, Any]:
        """The fields as a plain dict (nested Records stay Records)."""
        return {name: self.__dict__[name] for name in self._fields}

    def to_representation(self) -> dict[str, Any]:
        """The JSON-ready dict Faust writes: fields, nested Records expanded, ``__faust``."""
        data = {name: _represent(self.__dict__[name]) for name in self._fields}
        if self._include_metadata:
            data["__faust"] = {"ns": self._namespace}
        return data

    def derive(self: R, *objects: Record, **fields: Any) -> R:
        """A copy with the fields of ``objects``, then ``fields``, replaced (Faust's)."""
        data = self.asdict()
        for other in objects:
            data.update(other.asdict())
        return type(self)(**{**data, **fields})

    def dumps(self, *, serializer: str | None = None) -> bytes:
        """This Record as bytes with ``serializer`` (default: the class's, ``json``)."""
        return codecs.dumps(serializer or self._serializer, self.to_representation())

    @classmethod
    def loads(cls: type[R], data: bytes, *, serializer: str | None = None) -> R:
        """Decode bytes written by ``dumps`` (or by Faust) into this class."""
        return cls.from_data(codecs.loads(serializer or cls._serializer, data))

    @classmethod
    def from_data(cls: type[R], data: Mapping[str, Any]) -> R:
        """Build from a decoded dict; ``__faust`` and unknown keys are ignored.

        A field missing from ``data`` without a default raises ``TypeError``, which the
        seam reports to the error policy like any undecodable message.
        """
        if cls._bare and type(data) is dict:
            # The hot path of every decoded message (a plain model from JSON): the
            # fields copied into __dict__, nothing else to do. A missing field
            # (KeyError) takes the general way below (defaults, the error).
            record = cls.__new__(cls)
            state = record.__dict__
            try:
                for name in cls._plain_fields:  # type: ignore[union-attr]
                    state[name] = data[name]
            except KeyError:
                pass
            else:
                return record
        if type(data) is not dict and not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got "
                            f"{type(data).__name__}")
        converters = cls._converters
        if converters is None:
            converters = cls._resolve_converters()
        # The hot path of every decoded message: fill __dict__ directly instead of
        # going through __init__'s argument matching.
        record = cls.__new__(cls)
        state = record.__dict__
        plain = cls._plain_fields
        if plain is not None and type(data) is dict:
            # No field to convert: copy them in one go; a missing one (KeyError) takes
            # the field-by-field way below (defaults, the missing-fields error). Plain
            # dicts only: a Mapping's __getitem__ may answer for a key it lacks.
            try:
                for name in plain:
                    state[name] = data[name]
            except KeyError:
                pass
            else:
                if cls._converts:
                    _parse_isodates(record)
                if cls._validation:
                    record.validate_or_raise()
                record.__post_init__()
                return record
        fields = cls._fields
        for name, convert in converters:
            if name in data:
                value = data[name]
                state[name] = value if convert is None or value is None else convert(value)
            elif fields[name].required:
                missing = [n for n, f in fields.items() if f.required and n not in data]
                raise TypeError(f"{cls.__name__} missing required fields: "
                                f"{', '.join(missing)}")
            else:
                state[name] = copy_default(fields[name].default)
        if cls._converts:
            _parse_isodates(record)
        if cls._validation:
            record.validate_or_raise()
        record.__post_init__()
        return record

    @classmethod
    def _resolve_converters(cls) -> list[tuple[str, _Converter | None]]:
        """Resolve the fields' annotations into converters (once, at first decode:
        they may be forward references), and note whether the class is plain/bare."""
        converters = cls._converters = _build_converters(cls)
        if all(convert is None for _, convert in converters):
            cls._plain_fields = tuple(name for name, _ in converters)
            cls._bare = not cls._converts and not cls._validation and \
                cls.__post_init__ is Record.__post_init__
        return converters

    @classmethod
    def _from_data_function(cls: type[R]) -> Callable[[Any], R]:
        """:meth:`from_data` as a plain function, for a decoder that calls it per message.

        For a bare model it copies a dict's fields itself (the closure holds what
        ``from_data`` would look up on the class per call); anything else (a field
        missing, not a dict) goes to ``from_data``. Raises what resolving the
        annotations raises (then the caller keeps calling ``from_data``).
        """
        if cls._converters is None:
            cls._resolve_converters()
        from_data = cls.from_data
        plain = cls._plain_fields
        if not cls._bare or plain is None:
            return from_data
        new = object.__new__

        def bare_from_data(data: Any) -> R:
            if type(data) is dict:
                record = new(cls)
                state = record.__dict__
                try:
                    for name in plain:
                        state[name] = data[name]
                except KeyError:
                    pass
                else:
                    return record
            return from_data(data)
        return bare_from_data

    # -- behaviour of a value -------------------------------------------------------

    def validate(self) -> list[ValidationError]:
        """The fields whose value is not of their declared type, as Faust's (a list of
        :class:`ValidationError`, empty when the record is valid)."""
        hints = _hints(type(self))
        errors = []
        for name, field in self._fields.items():
            expected = hints.get(name, Any)
            value = self.__dict__[name]
            if value is None and field.spec is not None and not field.spec.required:
                continue  # Faust: required=False makes the field optional
            if not conforms(value, expected):
                type_name = getattr(expected, "__name__", None) or repr(expected)
                errors.append(ValidationError(
                    f"{type(self).__name__}.{name}: expected {type_name}, "
                    f"got {type(value).__name__} {value!r}"))
        for name, spec in self._checked:  # Faust's field classes: bounds and lengths
            value = self.__dict__[name]
            if value is not None:
                errors.extend(ValidationError(f"{type(self).__name__}.{name} {problem}: "
                                              f"{value!r}")
                              for problem in spec.problems(value))
        return errors

    @property
    def validation_errors(self) -> list[ValidationError]:
        """Faust's name for :meth:`validate`'s list."""
        return self.validate()

    def is_valid(self) -> bool:
        """Whether :meth:`validate` finds nothing."""
        return not self.validate()

    def validate_or_raise(self) -> None:
        """Raise the first :class:`ValidationError` (``validation=True`` runs it)."""
        errors = self.validate()
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._fields)
        return f"<{type(self).__name__}: {fields}>"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return all(self.__dict__[name] == other.__dict__[name] for name in self._fields)

    def __hash__(self) -> int:
        """By the fields' values, as Faust's records (a list-valued field cannot hash)."""
        return hash(tuple(self.__dict__[name] for name in self._fields))


def decode_known(obj: Any) -> Any:
    """``obj`` with every dict carrying a registered ``__faust.ns`` rebuilt as its Record.

    Used when no ``value_type`` is declared, and by the reply consumer.
    """
    if isinstance(obj, dict):
        model = _model_of(obj)
        if model is not None:
            return model.from_data(obj)
        return {key: decode_known(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [decode_known(item) for item in obj]
    return obj


def _model_of(obj: Mapping[str, Any]) -> type[Record] | None:
    meta = obj.get("__faust")
    if isinstance(meta, Mapping):
        return registry.get(meta.get("ns", ""))
    return None


def _represent(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_representation()
    if isinstance(value, list | tuple):
        return [_represent(item) for item in value]
    if isinstance(value, dict):
        return {key: _represent(item) for key, item in value.items()}
    return value


def _hints(cls: type[Record]) -> dict[str, Any]:
    """Resolved field annotations (cached per class after the first use)."""
    cached = cls.__dict__.get("_resolved_hints")
    if cached is None:
        cached = _resolve_hints(cls)
        cls._resolved_hints = cached
    return cached


def _resolve_hints(cls: type[Record]) -> dict[str, Any]:
    """Resolve field annotations; a name that cannot be resolved stays unconverted.

    Records defined in the same function as ``cls`` are visible by name, so local
    models (common in tests) can refer to each other.
    """
    scope = cls.__qualname__.rpartition(".")[0]
    siblings = {model.__name__: model for model in registry.values()
                if model.__module__ == cls.__module__
                and model.__qualname__.rpartition(".")[0] == scope}
    try:
        return typing.get_type_hints(cls, localns=siblings)
    except Exception:  # one unresolvable name: resolve the others one by one
        pass
    hints: dict[str, Any] = {}
    for name, field in cls._fields.items():
        holder = type("_OneField", (), {"__annotations__": {name: field.type},
                                        "__module__": field.model.__module__})
        try:
            hints[name] = typing.get_type_hints(holder, localns=siblings)[name]
        except Exception:
            continue
    return hints


def _parse_isodates(record: Record) -> None:
    """``isodates``/``coerce``/``date_parser``: fields converted to their types; then
    the values a field class prepares (``StringField(trim_whitespace=True)``)."""
    cls = type(record)
    state = record.__dict__
    if cls._isodates or cls._coerce or cls._date_parser:
        coerce_fields(state, _hints(cls), coerce=cls._coerce,
                      date_parser=cls._date_parser, owner=cls.__name__)
    for name, spec in cls._prepared:
        value = state[name]
        if value is not None:
            state[name] = spec.prepare(value)


def _build_converters(cls: type[Record]) -> list[tuple[str, _Converter | None]]:
    hints = _hints(cls)
    return [(name, _converter(hints.get(name, Any), cls._isodates)) for name in cls._fields]


def _converter(annotation: Any, isodates: bool) -> _Converter | None:
    """A function turning decoded JSON into the annotated type, or None if as-is."""
    if isinstance(annotation, type) and issubclass(annotation, Record):
        model = annotation
        return lambda value: value if isinstance(value, Record) else model.from_data(value)
    if annotation is datetime.datetime:
        if not isodates:
            return None
        return lambda value: (datetime.datetime.fromisoformat(value)
                              if isinstance(value, str) else value)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        return _converter(options[0], isodates) if len(options) == 1 else decode_known
    if origin in (list, set, frozenset, tuple) or _is_abc(origin, "Sequence", "Set"):
        item = _converter(args[0], isodates) if args else decode_known
        if item is None:
            return None
        container: Callable[[Any], Any] = (
            origin if origin in (list, set, frozenset, tuple) else list)
        convert_item = item
        return lambda value: container(convert_item(element) for element in value)
    if origin is dict or _is_abc(origin, "Mapping"):
        item = _converter(args[1], isodates) if len(args) == 2 else decode_known
        if item is None:
            return None
        return lambda value: {key: item(element) for key, element in value.items()}
    if annotation is Any or annotation is object:
        return decode_known
    return None


def _is_abc(origin: Any, *names: str) -> bool:
    return getattr(origin, "__module__", "") == "collections.abc" and \
        getattr(origin, "__name__", "") in {*names, f"Mutable{names[0]}"}
