"""The train step's training settings, checked against :class:`TrainConfig` itself.

The pipeline file's ``steps.train`` holds the step's own keys (``base``,
``out``, ``threads`` ...) and, beside them, any field of
:class:`sealtune.train.config.TrainConfig`. There is one schema for those:
the dataclass. :func:`check_train_fields` reads its fields and type hints
(nested dataclasses such as ``lora`` and ``dp`` included) to refuse unknown
keys and wrong types at the exact line and column, then hands the plain
values to :meth:`TrainConfig.from_dict`, whose own checks (ranges, the
fields it requires) run unchanged; an error of those is placed on the field
its message names. A field added to ``TrainConfig`` is accepted here without
a change.

What this protects against: a misspelt or mistyped training setting run
silently with a default (``epsilom: 8`` is an error, not DP off). What it
does not: judge whether valid settings are wise.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from sealtune.errors import ConfigError
from sealtune.train.config import TrainConfig
from sealtune.yaml_source import Mark, YMap, YNode, YScalar, YSeq, to_plain

__all__ = ["check_train_fields", "train_field_names", "unknown_key"]


@cache
def _hints(kind: type) -> dict[str, Any]:
    """The fields' type hints; ``Any`` for all if they cannot be resolved (e.g. a hint
    imported only for type checkers), leaving the checks to ``TrainConfig.from_dict``."""
    try:
        return get_type_hints(kind)
    except NameError:
        return {f.name: Any for f in dataclasses.fields(kind)}


def train_field_names() -> tuple[str, ...]:
    """The names of :class:`TrainConfig`'s fields, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig))


def unknown_key(mark: Mark, path: str, key: str, allowed: typing.Iterable[str]) -> ConfigError:
    """An unknown-key error that suggests the closest allowed key and lists them all."""
    names = sorted(allowed)
    close = difflib.get_close_matches(key, names, n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"{path}.{key}" if path else key
    return mark.error(where, f"unknown key{guess}", hint="allowed here: " + ", ".join(names))


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(hint))
    if origin is tuple:
        return f"a list ({_type_name(get_args(hint)[0])} each)"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}.get(hint, str(hint))


def _check(node: YNode, hint: Any, path: str) -> Any:
    """The plain value of ``node`` if it has type ``hint``; else a positioned ConfigError."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if isinstance(node, YScalar) and node.value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # Optional[X]: X's own, more precise, error
            return _check(node, others[0], path)
        for arg in others:
            try:
                return _check(node, arg, path)
            except ConfigError:
                continue
        raise node.mark.error(path, f"must be {_type_name(hint)}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _mapping(node, hint, path)
    if origin is tuple:
        if not isinstance(node, YSeq):
            raise node.mark.error(path, f"must be {_type_name(hint)}")
        return [_check(n, get_args(hint)[0], f"{path}[{i}]") for i, n in enumerate(node.items)]
    if not isinstance(node, YScalar):
        if hint is Any or hint is object:
            return to_plain(node)
        raise node.mark.error(path, f"must be {_type_name(hint)}")
    return _scalar(node, hint, path)


def _scalar(node: YScalar, hint: Any, path: str) -> Any:
    value = node.value
    ok = {bool: isinstance(value, bool), type(None): value is None,
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, int | float) and not isinstance(value, bool),
          str: isinstance(value, str)}
    if get_origin(hint) is Literal:
        if value in get_args(hint) and not isinstance(value, bool):
            return value
        raise node.mark.error(path, f"must be {_type_name(hint)}, not {value!r}")
    if hint in ok:
        if ok[hint]:
            return float(value) if hint is float else value  # type: ignore[arg-type]
        raise node.mark.error(path, f"must be {_type_name(hint)}")
    return value  # a type this checker does not know: TrainConfig.from_dict judges it


def _mapping(node: YNode, kind: type, path: str) -> dict[str, Any]:
    if not isinstance(node, YMap):
        raise node.mark.error(path, "must be a mapping")
    hints = _hints(kind)
    names = [f.name for f in dataclasses.fields(kind)]
    out: dict[str, Any] = {}
    for key, value in node.items.items():
        if key not in hints:
            raise unknown_key(node.key_marks[key], path, key, names)
        out[key] = _check(value, hints[key], f"{path}.{key}")
    for f in dataclasses.fields(kind):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in out:
            raise node.mark.error(f"{path}.{f.name}", "required here",
                                  hint=f"add {f.name}: to {path}")
    return out


def check_train_fields(section: YMap, keys: typing.Iterable[str], *,
                       path: str) -> TrainConfig:
    """Build the :class:`TrainConfig` from the keys ``keys`` of ``section``.

    Args:
        section: the ``steps.train`` mapping.
        keys: which of its keys are training settings (the caller checked they are fields).
        path: the section's path for messages (``steps.train``).

    Raises:
        ConfigError: a wrong type or an invalid value, at its line and column.
    """
    hints = _hints(TrainConfig)
    plain: dict[str, Any] = {}
    for key in keys:
        plain[key] = _check(section.items[key], hints[key], f"{path}.{key}")
    try:
        return TrainConfig.from_dict(plain)
    except ConfigError as exc:
        raise _placed(exc, section, plain, path) from None


def _leaves(section: YMap, keys: typing.Iterable[str]) -> dict[str, Mark]:
    """Dotted paths of the settings written (``dp``, ``dp.epsilon`` ...) and their marks."""
    found: dict[str, Mark] = {}
    for key in keys:
        found[key] = section.key_marks[key]
        node = section.items[key]
        if isinstance(node, YMap):
            for inner in node.items:
                found[f"{key}.{inner}"] = node.key_marks[inner]
    return found


def _without(plain: dict[str, Any], leaf: str) -> dict[str, Any]:
    outer, _, inner = leaf.partition(".")
    if not inner:
        return {k: v for k, v in plain.items() if k != outer}
    return {**plain, outer: {k: v for k, v in plain[outer].items() if k != inner}}


def _culprit(plain: dict[str, Any], leaves: typing.Iterable[str]) -> str | None:
    """The one setting whose removal (its default instead) makes the settings valid."""
    for leaf in sorted(leaves, key=lambda n: (-n.count("."), n)):
        try:
            TrainConfig.from_dict(_without(plain, leaf))
        except (ConfigError, TypeError, KeyError):
            continue
        return leaf
    return None


def _placed(exc: ConfigError, section: YMap, plain: dict[str, Any],
            path: str) -> ConfigError:
    """``exc`` placed on the setting at fault: the one whose removal makes the settings
    valid, else the one its message names, else the section."""
    message = re.sub(r"^training config:\s*", "", exc.message)
    leaves = _leaves(section, plain)

    def named(candidates: typing.Iterable[str]) -> str | None:
        return next((n for n in sorted(candidates, key=len, reverse=True)
                     if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", message)), None)

    leaf = named(n for n in leaves if "." in n) or _culprit(plain, leaves) or named(leaves)
    if leaf is not None:
        return leaves[leaf].error(f"{path}.{leaf}", message, hint=exc.hint)
    return section.mark.error(path, message, hint=exc.hint)
