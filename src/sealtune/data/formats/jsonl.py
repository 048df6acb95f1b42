"""Plain JSON lines with named text fields.

Without options a record needs ``prompt`` and ``response`` (or
``completion``) strings, which become a user and an assistant turn, or a
``text`` string, which becomes a single user turn. With options the caller
names the fields: ``text_field="body"`` (one user turn) or
``prompt_field``/``response_field``, or an ordered ``fields`` mapping of
field name to role. A named field that is missing or not a string is an
error naming the line and the field. Other fields go to ``Record.extra``.

What this guards against: a misspelt field name fails on the first line
instead of producing empty records. What it does not: it reads only the
fields it is told about; text in other fields is kept in ``extra`` only if
the policy keeps it (and is then scanned by the redactor's caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sealtune.data.formats.base import (
    Container,
    Message,
    ReadOptions,
    Record,
    Role,
    Where,
    get_str,
    make_record,
    register_format,
)

#: Default field layouts, tried in order.
DEFAULT_LAYOUTS: tuple[tuple[tuple[str, Role], ...], ...] = (
    (("prompt", "user"), ("response", "assistant")),
    (("prompt", "user"), ("completion", "assistant")),
    (("text", "user"),),
)


def layout_for(obj: Mapping[str, Any],
               options: ReadOptions) -> tuple[tuple[str, Role], ...] | None:
    """The field layout to use for ``obj``: the named one, else the first default that fits."""
    if options.fields:
        return options.fields
    for layout in DEFAULT_LAYOUTS:
        if all(name in obj for name, _ in layout):
            return layout
    return None


def fields_to_messages(obj: Mapping[str, Any], layout: tuple[tuple[str, Role], ...],
                       where: Where) -> list[Message]:
    """One message per named field, in layout order."""
    return [Message(role, get_str(obj, name, where) or "") for name, role in layout]


class JsonlFormat:
    """The plain JSONL parser (registered as ``jsonl``)."""

    name = "jsonl"
    container: Container = "json"

    def matches(self, obj: Mapping[str, Any], options: ReadOptions) -> bool:
        layout = layout_for(obj, options)
        return layout is not None and all(name in obj for name, _ in layout)

    def to_record(self, obj: Mapping[str, Any], *, where: Where, options: ReadOptions) -> Record:
        layout = layout_for(obj, options)
        if layout is None:
            raise where.error("text", "missing (name the text field with --text-field, "
                                      "or --prompt-field and --response-field)")
        return make_record(obj, where=where, options=options, name=self.name,
                           messages=fields_to_messages(obj, layout, where),
                           used={name for name, _ in layout})


register_format(JsonlFormat())
