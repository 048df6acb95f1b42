"""Pattern recognizers declared as data, and the validators they can name.

A policy can add detectors without code::

    [[pii.recognizers]]
    name = "employee_id"          # unique recognizer name
    type = "EMPLOYEE_ID"          # entity type (upper case; may be a built-in type)
    pattern = 'EMP-\\d{6}'        # Python regular expression
    validator = "luhn"            # optional: a name from VALIDATORS, or "stdnum:<module>"
    context = ["工号", "employee"] # optional context words (case-insensitive)
    context_required = false      # report only next to a context word
    score = 0.8                   # score of a match (context adds 0.1)
    group = 0                     # which capture group is the entity

Everything is checked when the policy loads and a mistake is a
:class:`~sealtune.errors.ConfigError` naming the field; nothing is ignored
(fail closed). Patterns run on the NFKC text, so full-width input matches
ASCII patterns. A pattern is code-like power: a catastrophic-backtracking
regex slows the whole stage, so policies should be reviewed like code.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric, uscc
from stdnum.iban import is_valid as iban_valid

from sealtune.data.pii._text import has_context
from sealtune.data.pii.base import Entity
from sealtune.errors import ConfigError

Validator = Callable[[str], bool]


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit() or c in "Xx")


def _phone(value: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(value, "CN")))
    except phonenumbers.NumberParseException:
        return False


#: Validator name -> function(matched text) -> bool. Separators are stripped
#: where the format has them.
VALIDATORS: dict[str, Validator] = {
    "luhn": lambda v: luhn.is_valid(_digits(v)),
    "cn_ric": lambda v: ric.is_valid(_digits(v)),
    "cn_uscc": lambda v: uscc.is_valid(v.replace(" ", "").replace("-", "")),
    "iban": lambda v: iban_valid(v),
    "phone": _phone,
}


def register_validator(name: str, func: Validator) -> None:
    """Register a validator by name; duplicates are refused."""
    if name in VALIDATORS:
        raise ValueError(f"validator {name!r} is already registered")
    VALIDATORS[name] = func


def resolve_validator(name: str, *, where: str) -> Validator:
    """A validator by registry name, or ``stdnum:<module>`` for any python-stdnum format."""
    if name in VALIDATORS:
        return VALIDATORS[name]
    if name.startswith("stdnum:") and re.fullmatch(r"[a-z][a-z0-9_.]*", name[7:]):
        try:
            module = importlib.import_module("stdnum." + name[7:])
        except ImportError:
            module = None
        func = getattr(module, "is_valid", None)
        if callable(func):
            return _StdnumValidator(func)
    raise ConfigError(
        f"{where}.validator: unknown validator {name!r}",
        hint=f"use one of {sorted(VALIDATORS)} or stdnum:<module> (e.g. stdnum:de.idnr)",
    )


class _StdnumValidator:
    """Wraps a python-stdnum ``is_valid`` as a :data:`Validator`."""

    def __init__(self, func: Callable[[str], object]) -> None:
        self._func = func

    def __call__(self, value: str) -> bool:
        return bool(self._func(value))


_KEYS = {"name", "type", "pattern", "validator", "context", "context_required", "score", "group",
         "ignore_case"}
_TYPE = re.compile(r"[A-Z][A-Z0-9_]{1,39}")
_NAME = re.compile(r"[a-z][a-z0-9_\-]{0,63}")


@dataclass(frozen=True)
class PatternRecognizer:
    """A regex recognizer with an optional validator and context words."""

    name: str
    entity_type: str
    pattern: re.Pattern[str]
    validator: Validator | None = None
    context: tuple[str, ...] = ()
    context_required: bool = False
    score: float = 0.8
    group: int = 0

    @property
    def entity_types(self) -> frozenset[str]:
        return frozenset({self.entity_type})

    def analyze(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        for m in self.pattern.finditer(text):
            start, end = m.span(self.group)
            if start == end or (self.validator and not self.validator(text[start:end])):
                continue
            near = bool(self.context) and has_context(text, start, end, self.context)
            if self.context_required and not near:
                continue
            score = round(min(1.0, self.score + 0.1), 4) if near else self.score
            found.append(Entity(self.entity_type, start, end, score, self.name))
        return found

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> PatternRecognizer:
        """Build from policy data; every mistake is a ConfigError naming ``where.field``."""
        unknown = set(data) - _KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}",
                              hint=f"allowed keys: {sorted(_KEYS)}")
        for key in ("name", "type", "pattern"):
            if not isinstance(data.get(key), str):
                raise ConfigError(f"{where}.{key}: required, a string")
        name, etype, source = data["name"], data["type"], data["pattern"]
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}.name: {name!r} must be lower case letters, digits, _ or -")
        if not _TYPE.fullmatch(etype):
            raise ConfigError(f"{where}.type: {etype!r} must be upper case, e.g. EMPLOYEE_ID")
        if len(source) > 1000:
            raise ConfigError(f"{where}.pattern: longer than 1000 characters")
        try:
            pattern = re.compile(source, re.IGNORECASE if data.get("ignore_case") else 0)
        except re.error as exc:
            raise ConfigError(f"{where}.pattern: invalid regular expression ({exc.msg})") from None
        context = data.get("context", [])
        if not isinstance(context, list) or not all(isinstance(w, str) and w for w in context):
            raise ConfigError(f"{where}.context: must be a list of non-empty strings")
        score = data.get("score", 0.8)
        if not isinstance(score, int | float) or isinstance(score, bool) or not 0 < score <= 1:
            raise ConfigError(f"{where}.score: must be a number in (0, 1]")
        group = data.get("group", 0)
        if isinstance(group, bool) or not isinstance(group, int) or \
                not 0 <= group <= pattern.groups:
            raise ConfigError(f"{where}.group: no such capture group in the pattern")
        required = data.get("context_required", False)
        if not isinstance(required, bool) or (required and not context):
            raise ConfigError(f"{where}.context_required: a boolean, and needs context words")
        validator = data.get("validator")
        if validator is not None and not isinstance(validator, str):
            raise ConfigError(f"{where}.validator: must be a string")
        return cls(name, etype, pattern,
                   resolve_validator(validator, where=where) if validator else None,
                   tuple(w.lower() for w in context), required, float(score), group)
