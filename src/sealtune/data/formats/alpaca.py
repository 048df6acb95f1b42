"""Alpaca records: ``instruction`` / ``input`` / ``output``, optional ``system`` and ``history``.

Shape (one JSON object per line, or elements of a JSON array)::

    {"instruction": "...", "input": "...", "output": "...",
     "system": "...", "history": [["earlier question", "earlier answer"], ...]}

becomes ``[system?] + history turns + user(instruction + "\\n\\n" + input) +
assistant(output)``, the layout LLaMA-Factory and Stanford Alpaca use. An
empty or missing ``input`` adds nothing. Other fields go to ``Record.extra``.

What this guards against: a record with a missing or non-string field is an
error naming the line and field instead of a silently empty turn. What it
does not: it cannot tell whether ``output`` really answers ``instruction``
(the screening stage looks for conflicting answers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sealtune.data.formats.base import (
    Container,
    Message,
    ReadOptions,
    Record,
    Where,
    get_str,
    make_record,
    register_format,
)

_USED = frozenset({"instruction", "input", "output", "system", "history"})


class AlpacaFormat:
    """The alpaca parser (registered as ``alpaca``)."""

    name = "alpaca"
    container: Container = "json"

    def matches(self, obj: Mapping[str, Any], options: ReadOptions) -> bool:
        return "instruction" in obj and "output" in obj

    def to_record(self, obj: Mapping[str, Any], *, where: Where, options: ReadOptions) -> Record:
        instruction = get_str(obj, "instruction", where) or ""
        extra_input = get_str(obj, "input", where, required=False)
        output = get_str(obj, "output", where) or ""
        system = get_str(obj, "system", where, required=False)
        messages: list[Message] = []
        if system:
            messages.append(Message("system", system))
        messages += _history(obj.get("history"), where)
        prompt = f"{instruction}\n\n{extra_input}" if extra_input else instruction
        messages += [Message("user", prompt), Message("assistant", output)]
        return make_record(obj, where=where, options=options, name=self.name,
                           messages=messages, used=_USED)


def _history(value: object, where: Where) -> list[Message]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error("history", "expected an array of [question, answer] pairs")
    turns: list[Message] = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2
                and all(isinstance(p, str) for p in pair)):
            raise where.error(f"history[{i}]", "expected a [question, answer] pair of strings")
        turns += [Message("user", pair[0]), Message("assistant", pair[1])]
    return turns


register_format(AlpacaFormat())
