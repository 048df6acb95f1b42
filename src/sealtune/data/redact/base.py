"""The Operator port of redaction, and its registry.

An operator decides what replaces one detected value. Most operators
*replace* the span (mask, tag, pseudonym, token); two are decisions about
the container instead: ``drop_field`` empties the message (or removes the
extra field) holding the value, ``drop_record`` removes the whole record.
An operator is built from its policy options by a factory registered in
:data:`OPERATORS`; the factory checks the options and raises
:class:`~sealtune.errors.ConfigError` naming the YAML path, so a policy with
a bad option never loads. Duplicate names are refused, so a plug-in cannot
silently replace a built-in operator.

Each operator says whether its output still *discloses* something derived
from the value (a kept suffix, a keyed surrogate, a ciphertext); ``SECRET``
values may only go to operators that do not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from sealtune.errors import ConfigError

if TYPE_CHECKING:
    from sealtune.data.redact.keys import DatasetKeys

Effect = Literal["replace", "drop_field", "drop_record"]


@runtime_checkable
class Operator(Protocol):
    """Replaces one detected value (or decides to drop its field or record)."""

    @property
    def name(self) -> str:
        """Registry name, e.g. ``mask``; also the action name in reports."""
        ...

    @property
    def effect(self) -> Effect:
        """``replace``, ``drop_field`` or ``drop_record``."""
        ...

    @property
    def needs_keys(self) -> bool:
        """True if :meth:`apply` needs the dataset keys."""
        ...

    @property
    def discloses(self) -> bool:
        """True if the output keeps something derived from the value."""
        ...

    def options(self) -> dict[str, Any]:
        """The options with defaults filled in (the policy's canonical form)."""
        ...

    def apply(self, value: str, *, entity_type: str, keys: DatasetKeys | None) -> str:
        """The replacement for ``value`` (``replace`` operators; others return '')."""
        ...


#: ``factory(options, where)`` -> operator; ``where`` names the YAML path for errors.
OperatorFactory = Callable[[Mapping[str, Any], str], Operator]

#: Operator name -> factory. Built-in modules register on import.
OPERATORS: dict[str, OperatorFactory] = {}


def register_operator(name: str, factory: OperatorFactory) -> None:
    """Register an operator factory under ``name``; duplicates are refused.

    Raises:
        ValueError: ``name`` is already registered.
    """
    if name in OPERATORS:
        raise ValueError(f"operator {name!r} is already registered")
    OPERATORS[name] = factory


def check_options(options: Mapping[str, Any], known: Mapping[str, type], *, where: str,
                  operator: str) -> None:
    """Refuse unknown option names and values of the wrong type.

    Raises:
        ConfigError: naming ``where.<option>``.
    """
    for key, value in options.items():
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"{where}.{key}: unknown option for operator {operator} "
                              f"(known: {names})")
        kind = known[key]
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise ConfigError(f"{where}.{key}: expected {_TYPE_NAMES.get(kind, kind.__name__)}")


_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false"}


class Simple:
    """Base for operators without options."""

    name: ClassVar[str] = ""
    effect: ClassVar[Effect] = "replace"
    needs_keys: ClassVar[bool] = False
    discloses: ClassVar[bool] = False

    def options(self) -> dict[str, Any]:
        return {}

    def apply(self, value: str, *, entity_type: str, keys: DatasetKeys | None) -> str:
        return ""

    @classmethod
    def factory(cls, options: Mapping[str, Any], where: str) -> Operator:
        """Build the operator (no options allowed)."""
        check_options(options, {}, where=where, operator=cls.name)
        return cls()
