"""``mask``: hide the characters of a value, optionally keeping a few at either end.

``138 0013 8000`` with ``keep_last: 4`` becomes ``*** **** 8000``: letters
and digits (any script, full-width included) are masked, separators are
kept so the shape stays readable. Options: ``char`` (one character, default
``*``), ``keep_first`` and ``keep_last`` (default 0 and 4). At most half of
a value's characters are ever kept, so a short value is never left whole.

What this protects against: the value itself appearing in the data. What it
does not: the kept characters are themselves a partial disclosure (the last
four digits of a card or phone number are what many identity checks ask
for), the length and separators stay visible, and two masked values with
the same kept characters cannot be told apart or linked (no consistency).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sealtune.data.redact.base import Effect, Operator, check_options, register_operator
from sealtune.errors import ConfigError

if TYPE_CHECKING:
    from sealtune.data.redact.keys import DatasetKeys


@dataclass(frozen=True)
class Mask:
    """The mask operator (registered as ``mask``)."""

    char: str = "*"
    keep_first: int = 0
    keep_last: int = 4
    name: ClassVar[str] = "mask"
    effect: ClassVar[Effect] = "replace"
    needs_keys: ClassVar[bool] = False
    discloses: ClassVar[bool] = True

    def options(self) -> dict[str, Any]:
        return {"char": self.char, "keep_first": self.keep_first, "keep_last": self.keep_last}

    def apply(self, value: str, *, entity_type: str, keys: DatasetKeys | None) -> str:
        slots = [i for i, c in enumerate(value) if c.isalnum()]
        budget = len(slots) // 2
        first = min(self.keep_first, budget)
        last = min(self.keep_last, budget - first)
        hidden = set(slots[first:len(slots) - last])
        return "".join(self.char if i in hidden else c for i, c in enumerate(value))

    @classmethod
    def factory(cls, options: Mapping[str, Any], where: str) -> Operator:
        """Build from policy options (``char``, ``keep_first``, ``keep_last``)."""
        check_options(options, {"char": str, "keep_first": int, "keep_last": int},
                      where=where, operator=cls.name)
        op = cls(**options)
        if len(op.char) != 1 or op.char.isalnum():
            raise ConfigError(f"{where}.char: must be one character that is not a letter or digit")
        for key in ("keep_first", "keep_last"):
            if not 0 <= getattr(op, key) <= 64:
                raise ConfigError(f"{where}.{key}: must be between 0 and 64")
        return op


register_operator(Mask.name, Mask.factory)
