"""The Format port of the data stage: parsers from a source shape to :class:`Record`.

A format turns one parsed source object (a JSON object, or a CSV row as a
``{column: cell}`` mapping) into a canonical
:class:`~sealtune.data.records.Record`. Reading the file (streaming,
decoding, line numbers, skip mode) is the facade's job
(:mod:`sealtune.data.formats`), so a format only has to know its own fields.
Formats register by name in :data:`FORMATS`; a duplicate name is refused, so
a plug-in cannot silently replace a built-in parser.

Errors are :class:`DataFormatError`: a problem with the *data* file (not with
sealtune's own configuration, hence not a ``ConfigError``). The message names
the file, the line and the field (``data.jsonl:12: messages[2].role: ...``)
and never a value taken from the record, so it is safe to log and to show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from sealtune.data.records import Message, Record, Role
from sealtune.errors import SealtuneError

Container = Literal["json", "csv"]

_HINT = ("fix or remove the line, or read with on_error='skip' (--on-error skip) to count "
         "and skip it")


class DataFormatError(SealtuneError):
    """A data file (or one line of it) does not have the expected shape.

    A data error, not a configuration error: it subclasses
    :class:`~sealtune.errors.SealtuneError` directly (exit status 1). The
    message carries the file, the 1-based line and the field; never content.

    Attributes:
        path: the data file as given.
        line: 1-based line number (``None`` for a whole-file problem).
        field: the field path (``messages[2].content``), or ``None``.
        problem: what is wrong, in fixed words.
    """

    prefix = "data"

    def __init__(self, path: str, line: int | None, field: str | None, problem: str, *,
                 hint: str | None = _HINT) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}",
                         hint=hint)
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ReadOptions:
    """How to map named fields (plain JSONL, CSV) to chat roles.

    Attributes:
        fields: ``(field name, role)`` pairs in conversation order; empty means
            the format's own defaults.
        id_field: the field holding the record id.
    """

    fields: tuple[tuple[str, Role], ...] = ()
    id_field: str = "id"


@dataclass(frozen=True, slots=True)
class Where:
    """The position of one source object, for error messages and ids.

    Attributes:
        path: the file as given.
        line: 1-based line where the object starts.
        index: 0-based number used as the id when the object has none (the
            line number for JSON lines, the element for a JSON array, the data
            row for CSV).
    """

    path: str
    line: int
    index: int

    def error(self, field: str | None, problem: str) -> DataFormatError:
        """A :class:`DataFormatError` at this position."""
        return DataFormatError(self.path, self.line, field, problem)


@runtime_checkable
class Format(Protocol):
    """Parses one source object into a :class:`Record`."""

    @property
    def name(self) -> str:
        """Registry name (``alpaca``, ``sharegpt``, ...), also ``Record.source_format``."""
        ...

    @property
    def container(self) -> Container:
        """The file shape it reads: JSON (lines or array) or CSV."""
        ...

    def matches(self, obj: Mapping[str, Any], options: ReadOptions) -> bool:
        """True if ``obj`` looks like this format (used by auto-detection)."""
        ...

    def to_record(self, obj: Mapping[str, Any], *, where: Where, options: ReadOptions) -> Record:
        """Build the record.

        Raises:
            DataFormatError: a field is missing or has the wrong type.
        """
        ...


#: Format name -> parser. Built-in modules register on import, in detection priority order.
FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> None:
    """Register ``fmt`` under its name; duplicates are refused.

    Raises:
        ValueError: the name is already registered.
    """
    if fmt.name in FORMATS:
        raise ValueError(f"format {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt


# -- helpers shared by the formats ------------------------------------------------------


def _kind(value: object) -> str:
    """A JSON type name for error messages (never the value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def get_str(obj: Mapping[str, Any], key: str, where: Where, *, field: str | None = None,
            required: bool = True) -> str | None:
    """``obj[key]`` as a string; missing (if required) or another type is an error."""
    name = field or key
    if key not in obj or obj[key] is None:
        if required:
            raise where.error(name, "missing")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise where.error(name, f"expected a string, found {_kind(value)}")
    return value


def get_list(obj: Mapping[str, Any], key: str, where: Where) -> Sequence[Any]:
    """``obj[key]`` as a non-empty JSON array."""
    value = obj.get(key)
    if value is None:
        raise where.error(key, "missing")
    if not isinstance(value, list):
        raise where.error(key, f"expected an array, found {_kind(value)}")
    if not value:
        raise where.error(key, "empty conversation")
    return value


def get_object(value: object, where: Where, field: str) -> Mapping[str, Any]:
    """``value`` as a JSON object."""
    if not isinstance(value, dict):
        raise where.error(field, f"expected an object, found {_kind(value)}")
    return value


def record_id(obj: Mapping[str, Any], where: Where, options: ReadOptions) -> str:
    """The record's id field (a string or integer), else the position index if absent or empty."""
    value = obj.get(options.id_field)
    if value is None or value == "":
        return str(where.index)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise where.error(options.id_field, f"expected a string or integer, found {_kind(value)}")
    return str(value)


def extras(obj: Mapping[str, Any], used: set[str] | frozenset[str],
           options: ReadOptions) -> dict[str, Any]:
    """The object's other fields (kept only if the policy names them)."""
    return {k: v for k, v in obj.items() if k not in used and k != options.id_field}


def make_record(obj: Mapping[str, Any], *, where: Where, options: ReadOptions, name: str,
                messages: list[Message], used: set[str] | frozenset[str]) -> Record:
    """Assemble a :class:`Record` with id, extras and the source format."""
    return Record(id=record_id(obj, where, options), line=where.line, messages=messages,
                  extra=extras(obj, used, options), source_format=name)


__all__ = [
    "FORMATS", "Container", "DataFormatError", "Format", "Message", "ReadOptions", "Record",
    "Role", "Where", "get_list", "get_object", "get_str", "make_record", "record_id",
    "register_format",
]
