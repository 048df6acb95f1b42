"""CSV with a header row: named columns become chat turns.

Columns map to roles by the caller's ``fields`` (or ``text_field`` /
``prompt_field`` + ``response_field``); without them, an alpaca header
(``instruction``, ``output``, optional ``input`` and ``system``) is read as
alpaca, and otherwise the known column names are used in header order:
``system`` -> system; ``prompt``, ``question``, ``query``, ``input``,
``user``, ``text`` -> user; ``response``, ``answer``, ``output``,
``completion``, ``assistant`` -> assistant. An empty ``system`` cell adds no
turn. The ``id`` column is the record id; other columns go to
``Record.extra`` as strings.

The facade (:mod:`sealtune.data.formats`) does the reading: delimiter
sniffed from the header (``,``, tab, ``;`` or ``|``), quoted multi-line
cells, per-line UTF-8 decoding, and rows with the wrong number of cells as
errors naming the line.

What this guards against: a header without any usable column is an error on
the first row, not an empty dataset. What it does not: CSV has no types, so
every cell is text (numbers in ``extra`` stay strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sealtune.data.formats.alpaca import AlpacaFormat
from sealtune.data.formats.base import (
    Container,
    ReadOptions,
    Record,
    Role,
    Where,
    make_record,
    register_format,
)
from sealtune.data.formats.jsonl import fields_to_messages

COLUMN_ROLES: dict[str, Role] = {
    "system": "system",
    "prompt": "user", "question": "user", "query": "user", "input": "user", "user": "user",
    "text": "user",
    "response": "assistant", "answer": "assistant", "output": "assistant",
    "completion": "assistant", "assistant": "assistant",
}
_ALPACA = frozenset({"instruction", "output"})
_ALPACA_PARSER = AlpacaFormat()


class CsvFormat:
    """The CSV parser (registered as ``csv``)."""

    name = "csv"
    container: Container = "csv"

    def matches(self, obj: Mapping[str, Any], options: ReadOptions) -> bool:
        return True

    def to_record(self, obj: Mapping[str, Any], *, where: Where, options: ReadOptions) -> Record:
        if not options.fields and obj.keys() >= _ALPACA:
            rec = _ALPACA_PARSER.to_record(obj, where=where, options=options)
            rec.source_format = self.name
            return rec
        layout = options.fields or tuple(
            (col, COLUMN_ROLES[col.lower()]) for col in obj if col.lower() in COLUMN_ROLES)
        if not layout:
            raise where.error(None, "no column maps to a chat role (name the columns with "
                                    "--text-field, or --prompt-field and --response-field)")
        messages = [m for m in fields_to_messages(obj, layout, where)
                    if m.role != "system" or m.content]
        return make_record(obj, where=where, options=options, name=self.name, messages=messages,
                           used={name for name, _ in layout})


register_format(CsvFormat())
