"""OpenAI chat fine-tuning records: ``{"messages": [{"role", "content"}, ...]}``.

Roles ``system``, ``developer`` (read as system), ``user`` and ``assistant``
are accepted; ``content`` is a string or a list of ``{"type": "text",
"text": ...}`` parts (joined). Tool and function turns, ``content: null``
(tool calls) and non-text parts (images, audio) are refused with an error
naming the turn, because the canonical record has no place for them. Other
per-message keys (``name``, ``weight``) are not kept; other top-level keys
go to ``Record.extra``. The sealed dataset's own line format
(:meth:`Record.to_json`) reads back through this parser.

What this guards against: a malformed turn is an error, never a silently
empty message. What it does not: it does not validate tool schemas (tool
records are refused as a whole).
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
    get_list,
    get_object,
    get_str,
    make_record,
    register_format,
)

ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user",
                          "assistant": "assistant"}


class OpenAIFormat:
    """The OpenAI chat parser (registered as ``openai``)."""

    name = "openai"
    container: Container = "json"

    def matches(self, obj: Mapping[str, Any], options: ReadOptions) -> bool:
        turns = obj.get("messages")
        return isinstance(turns, list) and all(
            isinstance(t, dict) and "role" in t for t in turns[:4])

    def to_record(self, obj: Mapping[str, Any], *, where: Where, options: ReadOptions) -> Record:
        turns = get_list(obj, "messages", where)
        messages = [_message(raw, where, f"messages[{i}]") for i, raw in enumerate(turns)]
        return make_record(obj, where=where, options=options, name=self.name,
                           messages=messages, used={"messages"})


def _message(raw: object, where: Where, field: str) -> Message:
    turn = get_object(raw, where, field)
    role_name = get_str(turn, "role", where, field=f"{field}.role") or ""
    role = ROLES.get(role_name)
    if role is None:
        raise where.error(f"{field}.role", f"unsupported role (known: {', '.join(ROLES)})")
    content = turn.get("content")
    if isinstance(content, str):
        return Message(role, content)
    if isinstance(content, list):
        return Message(role, _parts(content, where, f"{field}.content"))
    if content is None:
        raise where.error(f"{field}.content", "missing (tool-call turns are not supported)")
    raise where.error(f"{field}.content", "expected a string or a list of text parts")


def _parts(parts: list[Any], where: Where, field: str) -> str:
    texts: list[str] = []
    for i, raw in enumerate(parts):
        part = get_object(raw, where, f"{field}[{i}]")
        if part.get("type") != "text":
            raise where.error(f"{field}[{i}].type", "only text parts are supported")
        texts.append(get_str(part, "text", where, field=f"{field}[{i}].text") or "")
    return "".join(texts)


register_format(OpenAIFormat())
