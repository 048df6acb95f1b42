"""ShareGPT records: ``conversations`` of ``{"from", "value"}`` (or ``{"role", "content"}``) turns.

Speakers map to roles: ``human``/``user`` -> user, ``gpt``/``assistant``/
``chatgpt``/``bard``/``bing``/``model`` -> assistant, ``system`` -> system.
A top-level ``system`` string becomes a leading system turn. Tool and
function turns (``function_call``, ``observation``, ``tool``) are refused
with an error naming the turn: the canonical record has no tool role, and
dropping them silently would change what the model learns. The key
``conversation`` is accepted as a spelling of ``conversations``.

What this guards against: unknown speakers and non-string turns are errors
with line and field, not guesses. What it does not: it keeps the turn order
as given and does not check that turns alternate.
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

SPEAKERS: dict[str, Role] = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "bing": "assistant", "model": "assistant",
    "system": "system",
}


class ShareGptFormat:
    """The ShareGPT parser (registered as ``sharegpt``)."""

    name = "sharegpt"
    container: Container = "json"

    def matches(self, obj: Mapping[str, Any], options: ReadOptions) -> bool:
        turns = obj.get("conversations", obj.get("conversation"))
        return isinstance(turns, list) and all(
            isinstance(t, dict) and ("from" in t or "role" in t) for t in turns[:4])

    def to_record(self, obj: Mapping[str, Any], *, where: Where, options: ReadOptions) -> Record:
        key = "conversations" if "conversations" in obj or "conversation" not in obj \
            else "conversation"
        turns = get_list(obj, key, where)
        messages: list[Message] = []
        system = get_str(obj, "system", where, required=False)
        if system:
            messages.append(Message("system", system))
        for i, raw in enumerate(turns):
            messages.append(_turn(raw, where, f"{key}[{i}]"))
        return make_record(obj, where=where, options=options, name=self.name, messages=messages,
                           used={key, "system"})


def _turn(raw: object, where: Where, field: str) -> Message:
    turn = get_object(raw, where, field)
    speaker_key, text_key = ("from", "value") if "from" in turn else ("role", "content")
    speaker = get_str(turn, speaker_key, where, field=f"{field}.{speaker_key}") or ""
    role = SPEAKERS.get(speaker.lower())
    if role is None:
        raise where.error(f"{field}.{speaker_key}",
                          f"unsupported speaker (known: {', '.join(sorted(SPEAKERS))})")
    text = get_str(turn, text_key, where, field=f"{field}.{text_key}") or ""
    return Message(role, text)


register_format(ShareGptFormat())
