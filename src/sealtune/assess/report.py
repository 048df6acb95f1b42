"""``report.json``: the gate's result in a versioned, strictly validated schema.

Format ``sealtune.gate-report/v1`` (documented field by field in
``docs/assess.md``)::

    {"format": "sealtune.gate-report/v1", "id": "assess-...", "created": "...Z",
     "sealtune": "0.1.0", "verdict": "pass" | "fail", "failed": [probe, ...],
     "model": {"name", "source", "digest", "adapter", "weights_sha256", "job"},
     "base": null | {"name", "digest", "pinned", "licence"},
     "policy": {"source", "digest"},
     "probes": [{"name", "verdict", "reason", "required", "metrics", "intervals",
                 "thresholds", "series", "items"}, ...]}

The model is named by its digest (SHA-256 over its files' digests, as
attestation measures it), so a signed passing report binds to exactly one
model. :func:`render` writes the bytes (sorted keys, two-space indent: the
signed payload is these exact bytes); :func:`load` parses bytes and
:func:`validate` checks a document: exact key sets, types, bounded sizes,
ids and names as short tokens, reasons as short phrases, numbers finite.

What this protects against: a report that carries text (a field outside
the schema, a string that is not a token), a forged or hand-edited report
accepted by a reader that skips validation (readers call :func:`load`; the
signature, :mod:`sealtune.evidence.gate`, covers the bytes). What it does
not: a validated report is well-formed, not true; the signature and the
ledger say who produced it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from sealtune.assess.probes.base import FIELD, MAX_ROWS, TOKEN
from sealtune.errors import IntegrityError

FORMAT = "sealtune.gate-report/v1"
MAX_BYTES = 32 << 20
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PHRASE = re.compile(r"^[a-z0-9][a-z0-9 ,.;:()/'%<>=+-]{0,159}$")
_TOP = {"format", "id", "created", "sealtune", "verdict", "failed", "model", "base", "policy",
        "probes"}
_MODEL = {"name", "source", "digest", "adapter", "weights_sha256", "job"}
_BASE = {"name", "digest", "pinned", "licence"}
_POLICY = {"source", "digest"}
_PROBE = {"name", "verdict", "reason", "required", "metrics", "intervals", "thresholds",
          "series", "items"}
_VERDICTS = {"pass", "fail", "skipped", "off"}


def render(doc: Mapping[str, Any]) -> bytes:
    """The report's bytes (validated first): sorted keys, two-space indent, UTF-8, newline."""
    validate(doc)
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)
            + "\n").encode("ascii")


def load(data: bytes, *, what: str = "report.json") -> dict[str, Any]:
    """Parse and validate report bytes.

    Raises:
        IntegrityError: not a valid ``sealtune.gate-report/v1`` document.
    """
    if len(data) > MAX_BYTES:
        raise IntegrityError(f"{what}: larger than a gate report can be")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IntegrityError(f"{what}: not a JSON document") from None
    try:
        validate(doc)
    except ValueError as exc:
        raise IntegrityError(f"{what}: {exc}") from None
    assert isinstance(doc, dict)
    return doc


def _no_constant(name: str) -> None:
    raise ValueError("NaN and Infinity are not JSON")


def _fail(where: str, problem: str) -> None:
    raise ValueError(f"{where}: {problem}")


def _exact(obj: object, keys: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict) or set(obj) != keys:
        _fail(where, f"must be an object with exactly {', '.join(sorted(keys))}")
    assert isinstance(obj, dict)
    return obj


def _token(value: object, where: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not TOKEN.fullmatch(value) or not value:
        _fail(where, "must be a short token (letters, digits, _.,:/+=-)")


def _number(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        _fail(where, "must be a finite number")


def _scalar(value: object, where: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if not TOKEN.fullmatch(value):
            _fail(where, "strings must be short tokens")
        return
    _number(value, where)


def _scalars(obj: object, where: str) -> None:
    if not isinstance(obj, dict) or len(obj) > 256:
        _fail(where, "must be an object of at most 256 fields")
    assert isinstance(obj, dict)
    for key, value in obj.items():
        if not FIELD.fullmatch(key):
            _fail(where, "field names must match [a-z][a-z0-9_]*")
        _scalar(value, f"{where}.{key}")


def validate(doc: object) -> None:
    """Check a report document (see the module docstring).

    Raises:
        ValueError: the first problem, naming the field (never quoting a value).
    """
    top = _exact(doc, _TOP, "report")
    if top["format"] != FORMAT:
        _fail("format", f"must be {FORMAT}")
    for key in ("id", "created", "sealtune"):
        _token(top[key], key)
    if top["verdict"] not in ("pass", "fail"):
        _fail("verdict", "must be pass or fail")
    if not isinstance(top["failed"], list) or len(top["failed"]) > 64:
        _fail("failed", "must be a list of probe names")
    for name in top["failed"]:
        _token(name, "failed")
    if (top["verdict"] == "pass") != (not top["failed"]):
        _fail("verdict", "pass exactly when no probe failed")
    _model(top["model"])
    if top["base"] is not None:
        _base(top["base"])
    policy = _exact(top["policy"], _POLICY, "policy")
    _token(policy["source"], "policy.source")
    _digest(policy["digest"], "policy.digest")
    if not isinstance(top["probes"], list) or not 1 <= len(top["probes"]) <= 64:
        _fail("probes", "must list 1 to 64 probes")
    for probe in top["probes"]:
        _probe(probe)


def _digest(value: object, where: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        _fail(where, "must be sha256:<64 hex digits>")


def _model(obj: object) -> None:
    model = _exact(obj, _MODEL, "model")
    _token(model["name"], "model.name", optional=True)
    if model["source"] not in ("workspace", "directory"):
        _fail("model.source", "must be workspace or directory")
    _digest(model["digest"], "model.digest")
    if not isinstance(model["adapter"], bool):
        _fail("model.adapter", "must be true or false")
    _digest(model["weights_sha256"], "model.weights_sha256", optional=True)
    _token(model["job"], "model.job", optional=True)


def _base(obj: object) -> None:
    base = _exact(obj, _BASE, "base")
    _token(base["name"], "base.name", optional=True)
    _digest(base["digest"], "base.digest")
    if not isinstance(base["pinned"], bool):
        _fail("base.pinned", "must be true or false")
    _token(base["licence"], "base.licence", optional=True)


def _probe(obj: object) -> None:
    probe = _exact(obj, _PROBE, "probe")
    _token(probe["name"], "probe.name")
    where = f"probes.{probe['name']}"
    if probe["verdict"] not in _VERDICTS:
        _fail(f"{where}.verdict", "must be pass, fail, skipped or off")
    if not isinstance(probe["reason"], str) or not _PHRASE.fullmatch(probe["reason"]):
        _fail(f"{where}.reason", "must be a short lower-case phrase")
    if not isinstance(probe["required"], bool):
        _fail(f"{where}.required", "must be true or false")
    _scalars(probe["metrics"], f"{where}.metrics")
    _scalars(probe["thresholds"], f"{where}.thresholds")
    _intervals(probe["intervals"], f"{where}.intervals")
    _series(probe["series"], f"{where}.series")
    items = probe["items"]
    if not isinstance(items, list) or len(items) > MAX_ROWS:
        _fail(f"{where}.items", f"must be a list of at most {MAX_ROWS} rows")
    for row in items:
        _scalars(row, f"{where}.items")


def _intervals(obj: object, where: str) -> None:
    if not isinstance(obj, dict) or len(obj) > 64:
        _fail(where, "must be an object of at most 64 intervals")
    assert isinstance(obj, dict)
    for key, pair in obj.items():
        if not FIELD.fullmatch(key):
            _fail(where, "names must match [a-z][a-z0-9_]*")
        if not isinstance(pair, list) or len(pair) != 2:
            _fail(f"{where}.{key}", "must be [low, high]")
        for value in pair:
            if value is not None:
                _number(value, f"{where}.{key}")


def _series(obj: object, where: str) -> None:
    if not isinstance(obj, dict) or len(obj) > 32:
        _fail(where, "must be an object of at most 32 number lists")
    assert isinstance(obj, dict)
    for key, values in obj.items():
        if not FIELD.fullmatch(key):
            _fail(where, "names must match [a-z][a-z0-9_]*")
        if not isinstance(values, list) or len(values) > MAX_ROWS:
            _fail(f"{where}.{key}", f"must be a list of at most {MAX_ROWS} numbers")
        for value in values:
            _number(value, f"{where}.{key}")


def finite(value: float) -> float | None:
    """``value``, or None when it is NaN or infinite (JSON has neither)."""
    return value if math.isfinite(value) else None
