"""``tag``: replace a value with its entity type, e.g. ``[PHONE]``.

Option ``format`` (default ``[{type}]``) must contain ``{type}`` and no
other braces.

What this protects against: the value, its length and its shape all
disappear; the only operator besides dropping that ``SECRET`` values may
use. What it does not: it keeps the fact that a value of that type was
there, and it breaks linkability (two different phone numbers both become
``[PHONE]``), which can make conversations less coherent for training.
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
class Tag:
    """The tag operator (registered as ``tag``)."""

    format: str = "[{type}]"
    name: ClassVar[str] = "tag"
    effect: ClassVar[Effect] = "replace"
    needs_keys: ClassVar[bool] = False
    discloses: ClassVar[bool] = False

    def options(self) -> dict[str, Any]:
        return {"format": self.format}

    def apply(self, value: str, *, entity_type: str, keys: DatasetKeys | None) -> str:
        return self.format.replace("{type}", entity_type)

    @classmethod
    def factory(cls, options: Mapping[str, Any], where: str) -> Operator:
        """Build from policy options (``format``)."""
        check_options(options, {"format": str}, where=where, operator=cls.name)
        op = cls(**options)
        rest = op.format.replace("{type}", "")
        if "{type}" not in op.format or "{" in rest or "}" in rest or len(op.format) > 64:
            raise ConfigError(f"{where}.format: must contain {{type}} and no other braces "
                              "(at most 64 characters)")
        return op


register_operator(Tag.name, Tag.factory)
