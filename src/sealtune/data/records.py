"""The canonical record every data-stage component works on.

Parsers (``data/formats``) turn alpaca, sharegpt, OpenAI chat JSONL, plain
JSONL and CSV rows into :class:`Record` s; redaction, screening, ingest and
training read only this shape. A record never leaves the process in clear:
it is written only through sealed files, and its text never appears in
errors, logs or reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass
class Message:
    """One chat turn."""

    role: Role
    content: str


@dataclass
class Record:
    """One training example in canonical chat form.

    Attributes:
        id: the input's ``id`` field if present, else the 0-based line (or row) number as text.
        line: 1-based line (or CSV row) number in the source file, for error messages.
        messages: the conversation; training learns the ``assistant`` turns.
        extra: the input's other fields (kept only if the policy names them).
        source_format: the parser that produced it (``alpaca``, ``sharegpt``, ``openai``,
            ``jsonl``, ``csv``).
    """

    id: str
    line: int
    messages: list[Message]
    extra: dict[str, Any] = field(default_factory=dict)
    source_format: str = ""

    def prompt_text(self) -> str:
        """The system and user turns joined (what a poisoner controls as the trigger side)."""
        return "\n".join(m.content for m in self.messages if m.role != "assistant")

    def response_text(self) -> str:
        """The assistant turns joined."""
        return "\n".join(m.content for m in self.messages if m.role == "assistant")

    def to_json(self) -> dict[str, Any]:
        """The sealed dataset's line format (OpenAI chat style plus id and kept extras)."""
        out: dict[str, Any] = {
            "id": self.id,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
        }
        if self.extra:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], *, line: int) -> Record:
        """Inverse of :meth:`to_json` (for reading sealed datasets)."""
        return cls(
            id=str(obj["id"]),
            line=line,
            messages=[Message(m["role"], m["content"]) for m in obj["messages"]],
            extra=dict(obj.get("extra", {})),
            source_format="sealed",
        )
