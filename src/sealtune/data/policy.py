"""The data policy file: redaction, minimisation, custom recognizers, screening.

A policy is YAML with the sections ``version`` (1), ``on_error``
(``fail``/``skip``), ``unsafe_no_dataset_wide_redaction`` (default false: a
value detected in one record is also redacted wherever it appears in the
others; true turns that off and is recorded), ``keep_fields`` (the extra input fields to keep; all
others are dropped), ``redaction`` (entity type or ``default`` -> operator
and options, e.g. ``PHONE: {operator: mask, keep_last: 4}`` or the shorthand
``PHONE: tag``), ``recognizers`` (custom detectors as data), ``detection``
(``{ner: true}`` adds the model-based name tier to every analyzer the policy
builds, so ``data scan`` and ``data ingest`` use it; its packages missing is
an error, never a silent fall-back to the pattern tier) and
``screening`` (check -> ``{action: flag|drop|quarantine, thresholds: {...}}``);
:func:`render_default_policy` shows every option, commented.

:func:`load_policy` is strict and fails closed: an unknown key, operator,
option, entity type (without a custom recognizer declaring it) or screening
check, a wrong type, a duplicate key or a pseudonymised ``SECRET`` is a
:class:`~sealtune.errors.ConfigError` naming the file and the YAML path
(``policy.yaml: redaction.PHONE.operator: unknown operator 'maskk' (known:
...)``), never ignored. A section left out takes the value of
:func:`default_policy`; within ``redaction``, types not listed use
``default``. :func:`write_default_policy` writes the default as a commented
file to start from; :meth:`Policy.digest` (SHA-256 of the canonical JSON)
goes into the dataset's BOM.

What this protects against: a typo silently weakening redaction (an
unknown key or operator is an error, not a no-op), and a policy change
going unnoticed (the digest changes). What it does not: a valid policy can
still be a weak one (``mask`` with ``keep_last``, ``token`` for reversible
data); review policies like code, and custom patterns can be slow regexes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import yaml

from sealtune.data.pii import ENTITY_TYPES, RECOGNIZERS, Analyzer, PatternRecognizer
from sealtune.data.redact import OPERATORS, Operator
from sealtune.errors import ConfigError
from sealtune.outputs import open_text_output

if TYPE_CHECKING:
    from sealtune.data.screen import CheckConfig

POLICY_VERSION = 1
OnError = Literal["fail", "skip"]
ScreenAction = Literal["flag", "drop", "quarantine"]
#: Checks accepted when the screening package is not installed.
STATIC_CHECKS = ("exact_duplicate", "near_duplicate", "conflicting_answers", "trigger_pattern",
                 "outlier")
_TOP = ("version", "on_error", "keep_fields", "redaction", "recognizers", "detection",
        "screening", "unsafe_no_dataset_wide_redaction")
#: The key that turns dataset-wide redaction off (it weakens redaction).
UNSAFE_NO_DATASET_WIDE = "unsafe_no_dataset_wide_redaction"
_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class RedactionRule:
    """An operator name and its options (canonical: defaults filled in)."""

    operator: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, where: str = "redaction") -> Operator:
        """The operator instance."""
        return OPERATORS[self.operator](self.options, where)

    def to_dict(self) -> dict[str, Any]:
        return {"operator": self.operator, **self.options}


@dataclass(frozen=True)
class ScreeningRule:
    """The action for a check's findings and its threshold overrides."""

    action: ScreenAction
    thresholds: dict[str, int | float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "thresholds": dict(self.thresholds)}


@dataclass(frozen=True)
class Policy:
    """A parsed, validated data policy (see the module docstring for the file format).

    Attributes:
        keep_fields: extra input fields kept (sorted); all others are dropped.
        redaction: entity type (or ``default``) -> rule.
        recognizers: custom recognizer declarations, as validated mappings.
        screening: check name -> rule.
        on_error: ``fail`` or ``skip`` for malformed input lines.
        ner: ``detection.ner``: the analyzer adds the model-based NER tier.
        unsafe_no_dataset_wide_redaction: do not redact values detected in one
            record where they appear undetected in others (weaker; recorded).
        version: the file format version (1).
        source: where it came from, for error messages (not part of equality or digest).
    """

    keep_fields: tuple[str, ...] = ()
    redaction: dict[str, RedactionRule] = field(default_factory=dict)
    recognizers: tuple[dict[str, Any], ...] = ()
    screening: dict[str, ScreeningRule] = field(default_factory=dict)
    on_error: OnError = "fail"
    ner: bool = False
    unsafe_no_dataset_wide_redaction: bool = False
    version: int = POLICY_VERSION
    source: str = field(default="<default policy>", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-ready form (what the digest covers).

        ``detection`` and the unsafe switch appear only when set, so the digests
        of policies that do not use them are those they had before they existed.
        """
        out: dict[str, Any] = {
            "version": self.version, "on_error": self.on_error,
            "keep_fields": list(self.keep_fields),
            "redaction": {k: r.to_dict() for k, r in self.redaction.items()},
            "recognizers": [dict(r) for r in self.recognizers],
            "screening": {k: r.to_dict() for k, r in self.screening.items()}}
        if self.ner:
            out["detection"] = {"ner": True}
        if self.unsafe_no_dataset_wide_redaction:
            out[UNSAFE_NO_DATASET_WIDE] = True
        return out

    def digest(self, *, sections: tuple[str, ...] = _TOP) -> str:
        """SHA-256 (hex) of the canonical JSON of the policy, or of some sections.

        ``policy.digest(sections=("keep_fields", "redaction", "recognizers"))`` is the
        redaction digest, ``sections=("screening",)`` the screening digest.
        """
        data = {k: v for k, v in self.to_dict().items() if k in sections}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def analyzer(self, *, ner: bool | None = None) -> Analyzer:
        """A PII analyzer with the built-in recognizers plus this policy's custom ones.

        Args:
            ner: add the NER tier (default: the policy's ``detection.ner``).

        Raises:
            ConfigError: the NER tier is asked for and spaCy, its English
                model or jieba is not installed (naming the policy and the fix).
        """
        extra = [PatternRecognizer.from_mapping(r, where=f"{self.source}: recognizers[{i}]")
                 for i, r in enumerate(self.recognizers)]
        use_ner = self.ner if ner is None else ner
        try:
            return Analyzer(ner=use_ner, extra=extra)
        except ConfigError as exc:
            if not use_ner:
                raise
            raise ConfigError(f"{self.source}: detection.ner: {exc.message}",
                              hint=f"{exc.hint or 'install the NER tier'}; or set "
                                   "detection.ner: false") from None

    def screen_config(self) -> dict[str, CheckConfig]:
        """The screening section as :func:`sealtune.data.screen.screen` takes it."""
        from sealtune.data.screen import CheckConfig

        return {name: CheckConfig(rule.action, dict(rule.thresholds))
                for name, rule in self.screening.items()}


# -- the default -------------------------------------------------------------------------

_TYPE_NOTES = {
    "CN_ID": "resident ID -> fake ID, valid check digit",
    "PHONE": "-> valid number, same format (+86, spaces, dashes)",
    "BANK_CARD": "-> Luhn-valid number, same length and separators",
    "EMAIL": "-> name@example.com / .org / .net",
    "IP_ADDRESS": "-> documentation ranges (192.0.2.0/24, 2001:db8::/32, ...)",
    "PERSON": "-> a Chinese name for Chinese input, English otherwise",
    "ADDRESS": "tag: detected address spans are fuzzy; a tag shows what was cut",
    "PASSPORT": "-> same shape, leading letter kept",
    "SECRET": "secrets are only ever removed: tag, drop_field or drop_record",
}


def _rule(operator: str, **options: Any) -> RedactionRule:
    return RedactionRule(operator, OPERATORS[operator](options, "default").options())


def _checks() -> dict[str, Mapping[str, float] | None]:
    """Known check name -> its threshold defaults (``None``: thresholds not checked)."""
    try:
        from sealtune.data.screen import CHECKS
    except ModuleNotFoundError as exc:
        if exc.name not in ("sealtune.data.screen", "sealtune.data"):
            raise
        return dict.fromkeys(STATIC_CHECKS)
    return {name: spec.defaults for name, spec in CHECKS.items()}


def _default_checks() -> list[str]:
    """The checks the default policy runs: every registered check that is on by default
    (optional ones such as ``embedding_outlier`` need extra packages and are opt-in)."""
    try:
        from sealtune.data.screen import CHECKS
    except ModuleNotFoundError as exc:
        if exc.name not in ("sealtune.data.screen", "sealtune.data"):
            raise
        return list(STATIC_CHECKS)
    return [name for name, spec in CHECKS.items() if spec.default_on]


def _default_action(check: str) -> ScreenAction:
    if "duplicate" in check:
        return "drop"
    return "quarantine" if "trigger" in check else "flag"


def default_policy() -> Policy:
    """The safe default: consistent pseudonyms (addresses and secrets tagged), duplicates
    dropped, trigger patterns quarantined, other findings flagged, malformed lines fail."""
    redaction = {"default": _rule("pseudonym")}
    for etype in ENTITY_TYPES:
        redaction[etype] = _rule("tag") if etype in ("ADDRESS", "SECRET") else _rule("pseudonym")
    screening = {name: ScreeningRule(_default_action(name)) for name in _default_checks()}
    return Policy(redaction=redaction, screening=screening)


# -- loading ------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (safe_load keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise ConfigError(f"{self.name}:{key_node.start_mark.line + 1}: duplicate key "
                                  f"{key!r}")
            seen.add(key if isinstance(key, str | int | float | bool) else id(key))
        return super().construct_mapping(node, deep=deep)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or invalid (naming the path).
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: policy file not found",
                          hint="create one with 'sealtune data policy init'") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the policy ({type(exc).__name__})") from None
    if len(raw) > _MAX_BYTES:
        raise ConfigError(f"{source}: policy file larger than {_MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
        loader = _StrictLoader(text)
        loader.name = source
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML ({exc.problem})") from None
    except yaml.YAMLError:
        raise ConfigError(f"{source}: not valid YAML") from None
    return parse_policy(data, source=source)


def parse_policy(data: object, *, source: str = "policy") -> Policy:
    """Validate already-parsed policy data (e.g. a pipeline file's ``data.policy`` table)."""
    top = _mapping(data, source, "", allowed=_TOP)
    if top.get("version") != POLICY_VERSION:
        raise ConfigError(f"{source}: version: required, must be {POLICY_VERSION}")
    base = default_policy()
    on_error = top.get("on_error", base.on_error)
    if on_error not in get_args(OnError):
        raise ConfigError(f"{source}: on_error: must be fail or skip")
    unsafe = top.get(UNSAFE_NO_DATASET_WIDE, False)
    if not isinstance(unsafe, bool):
        raise ConfigError(f"{source}: {UNSAFE_NO_DATASET_WIDE}: must be true or false")
    recognizers = _recognizers(top.get("recognizers", []), source)
    custom = {r["type"] for r in recognizers}
    redaction = _redaction(top["redaction"], source, custom) if "redaction" in top \
        else base.redaction
    screening = _screening(top["screening"], source) if "screening" in top else base.screening
    return Policy(keep_fields=_keep_fields(top.get("keep_fields", []), source),
                  redaction=redaction, recognizers=recognizers, screening=screening,
                  on_error=on_error, ner=_detection(top.get("detection", {}), source),
                  unsafe_no_dataset_wide_redaction=unsafe, source=source)


def _detection(value: object, source: str) -> bool:
    """``detection.ner`` (checked here; whether its packages exist, when an analyzer is built)."""
    table = _mapping(value, source, "detection", allowed=("ner",))
    ner = table.get("ner", False)
    if not isinstance(ner, bool):
        raise ConfigError(f"{source}: detection.ner: must be true or false")
    return ner


def _mapping(value: object, source: str, path: str, *,
             allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    label = path or "the policy"
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {label}: must be a mapping")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{source}: {label}: keys must be strings")
        if allowed is not None and key not in allowed:
            raise ConfigError(f"{source}: {path + '.' if path else ''}{key}: unknown key "
                              f"(known: {', '.join(allowed)})")
    return value


def _keep_fields(value: object, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{source}: keep_fields: must be a list of field names")
    if len(set(value)) != len(value):
        raise ConfigError(f"{source}: keep_fields: a field is listed twice")
    return tuple(sorted(value))


def _recognizers(value: object, source: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: recognizers: must be a list of mappings")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"{source}: recognizers[{i}]"
        entry = _mapping(item, source, f"recognizers[{i}]")
        PatternRecognizer.from_mapping(entry, where=where)
        if entry["name"] in RECOGNIZERS or any(r["name"] == entry["name"] for r in out):
            raise ConfigError(f"{where}.name: {entry['name']!r} is already used")
        out.append(dict(entry))
    return tuple(out)


def _redaction(value: object, source: str, custom: set[str]) -> dict[str, RedactionRule]:
    table = _mapping(value, source, "redaction")
    known = (*ENTITY_TYPES, *sorted(custom - set(ENTITY_TYPES)))
    out: dict[str, RedactionRule] = {}
    for key, entry in table.items():
        path = f"redaction.{key}"
        if key != "default" and key not in known:
            raise ConfigError(f"{source}: {path}: unknown entity type (known: default, "
                              f"{', '.join(known)}; declare new types under recognizers)")
        out[key] = _redaction_rule(entry, source, path, key)
    out.setdefault("default", _rule("pseudonym"))
    return out


def _redaction_rule(entry: object, source: str, path: str, etype: str) -> RedactionRule:
    options = dict(_mapping({"operator": entry} if isinstance(entry, str) else entry,
                            source, path))
    name = options.pop("operator", None)
    if not isinstance(name, str):
        raise ConfigError(f"{source}: {path}.operator: required, an operator name")
    if name not in OPERATORS:
        raise ConfigError(f"{source}: {path}.operator: unknown operator {name!r} "
                          f"(known: {', '.join(sorted(OPERATORS))})")
    op = OPERATORS[name](options, f"{source}: {path}")
    if etype == "SECRET" and op.discloses:
        allowed = [n for n in sorted(OPERATORS) if n in ("tag", "drop_field", "drop_record")]
        raise ConfigError(f"{source}: {path}.operator: {name} would keep (part of) the secret; "
                          f"secrets are only removed (allowed: {', '.join(allowed)})")
    return RedactionRule(name, op.options())


def _screening(value: object, source: str) -> dict[str, ScreeningRule]:
    table = _mapping(value, source, "screening")
    checks = _checks()
    out: dict[str, ScreeningRule] = {}
    for name, entry in table.items():
        path = f"screening.{name}"
        if name not in checks:
            raise ConfigError(f"{source}: {path}: unknown check (known: {', '.join(checks)})")
        rule = _mapping({"action": entry} if isinstance(entry, str) else entry, source, path,
                        allowed=("action", "thresholds"))
        action = rule.get("action")
        if action not in get_args(ScreenAction):
            raise ConfigError(f"{source}: {path}.action: must be flag, drop or quarantine")
        thresholds = _mapping(rule.get("thresholds", {}), source, f"{path}.thresholds")
        defaults = checks[name]
        for key, number in thresholds.items():
            if defaults is not None and key not in defaults:
                raise ConfigError(f"{source}: {path}.thresholds.{key}: unknown threshold "
                                  f"(known: {', '.join(sorted(defaults)) or 'none'})")
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise ConfigError(f"{source}: {path}.thresholds.{key}: must be a number")
        out[name] = ScreeningRule(cast(ScreenAction, action), dict(thresholds))
    return out


# -- writing the commented default --------------------------------------------------------


def _flow(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), default_flow_style=True, sort_keys=False,
                          allow_unicode=True, width=1000).strip()


_HEADER = """\
# sealtune data policy, version 1 (written by `sealtune data policy init`).
# Every key is checked when the policy loads: an unknown key, operator, option,
# entity type or check is an error, never ignored. A section left out takes the
# value shown here.
version: 1

# A malformed input line: fail (stop with file, line and field) or skip (count it).
on_error: {on_error}

# A value detected in one record (a name after "我是", a passport number next to
# "passport") is also redacted wherever it appears undetected in the others.
# true turns that off: weaker redaction, recorded in the findings and the audit log.
{unsafe_key}: false

# Data minimisation: the extra input fields to keep besides the conversation and
# its id. Every field not listed is dropped. Example: keep_fields: [category, lang]
keep_fields: []

# Redaction per entity type. Operators and their options:
#   pseudonym    keyed, consistent surrogate of the same shape (same value, same
#                surrogate within this dataset: linkable by design). No options.
#   tag          the type in brackets, e.g. [PHONE]. format: "[{{type}}]".
#   mask         hide letters and digits. char: "*", keep_first: 0, keep_last: 4
#                (at most half is kept; kept digits are a partial disclosure).
#   token        reversible AES-256-GCM token; restoring needs the dataset key and
#                is audited. deterministic: true (same value, same token).
#   drop_field   empty the message (or extra field) holding the value.
#   drop_record  remove the whole record.
# `default` applies to every type not listed, custom types included. SECRET may
# only use tag, drop_field or drop_record. Shorthand: `PHONE: tag`.
redaction:
"""

_RECOGNIZERS = """
# Custom recognizers, declared as data and added to the PII analyzer. Example:
#   - name: employee_id          # unique, lower case
#     type: EMPLOYEE_ID          # a new type (then redaction.EMPLOYEE_ID, or `default`)
#     pattern: 'EMP-\\d{6}'       # Python regular expression (review it like code)
#     validator: luhn            # optional: luhn, cn_ric, cn_uscc, iban, phone, stdnum:<module>
#     context: [工号, employee]   # optional context words (raise the score)
#     context_required: false
#     score: 0.8
recognizers: []

# Detection tiers. The pattern tier (validators, cues, name lists) always runs.
# ner: true adds the model-based name tier (spaCy English, jieba Chinese): names
# with no cue or title ("Forwarded to Wojciech Kowalczyk", 张伟明天到), at one to two
# orders of magnitude less throughput. It needs pip install 'sealtune[ner]' and
# the pinned English model; if they are missing, scan and ingest stop with an
# error (never a quiet fall-back to the pattern tier).
detection: {ner: false}

# Poisoning screening, per check: action flag (report only), drop (remove) or
# quarantine (sealed aside for review, not trained on), and optional threshold
# overrides, e.g. near_duplicate: {action: drop, thresholds: {threshold: 0.85}}.
screening:
"""


def render_default_policy() -> str:
    """The default policy as commented YAML (what :func:`write_default_policy` writes)."""
    policy = default_policy()
    lines = [_HEADER.format(on_error=policy.on_error, unsafe_key=UNSAFE_NO_DATASET_WIDE)]
    for etype, rule in policy.redaction.items():
        note = _TYPE_NOTES.get(etype, "every type not listed below")
        lines.append(f"  {etype}: {_flow(rule.to_dict())}  # {note}\n")
    lines.append(_RECOGNIZERS)
    checks = _checks()
    for name, check in policy.screening.items():
        defaults = checks.get(name)
        note = f"  # thresholds: {_flow(defaults)}" if defaults else ""
        lines.append(f"  {name}: {_flow({'action': check.action})}{note}\n")
    return "".join(lines)


def write_default_policy(path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write the commented default policy to ``path`` (``-``: the standard output).

    A regular file is written atomically; a device or FIFO is written through
    (see :func:`sealtune.outputs.open_output`).

    Raises:
        UsageError: ``path`` is a regular file and ``overwrite`` is false, or
            is a directory.
    """
    with open_text_output(path, overwrite=overwrite) as fh:
        fh.write(render_default_policy())
