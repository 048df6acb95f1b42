"""in-toto Statement v1 with a SLSA provenance v1 predicate, for one pipeline step.

A step's statement says, in the vocabulary auditors' tools already read::

    _type          https://in-toto.io/Statement/v1
    subject        the step's outputs: [{name, digest: {sha256}}]
    predicateType  https://slsa.dev/provenance/v1
    predicate
      buildDefinition
        buildType             https://sealtune.local/buildtypes/<kind>/v1
        externalParameters    the step's config (names and numbers; keys by name only)
        internalParameters    {"sandbox": the measurement (digest and parts)} or {}
        resolvedDependencies  the step's inputs: [{name, digest: {sha256}}]
      runDetails
        builder   {id: https://sealtune.local/builder/<workspace id>, version: {sealtune}}
        metadata  {invocationId: the run id, startedOn, finishedOn}
        byproducts  the step's ledger events [{name: ledger/<seq>, digest: {sha256 of
                    the leaf}}] (an event pruned by retention: {rfc6962-leaf: its leaf
                    hash}) and attached records (the BOM, the training record with ε
                    in its annotations)

The URIs are identifiers, not addresses that resolve. Encoding is canonical
JSON (:mod:`sealtune.evidence._json`); timestamps are whole seconds in UTC.
:func:`parse_statement` reads a statement back strictly, for the verifier.

What this protects against: a config that smuggles a secret by its field name
(fields named like passwords, tokens, PINs or private keys are refused, and
bytes are not JSON), an ambiguous digest (lower-case hex SHA-256 only), a
statement whose structure differs from what the verifier expects. What it
does not: decide what the step really read or wrote (the caller passes the
digests), or catch a secret placed under an innocent field name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sealtune
from sealtune.errors import IntegrityError, UsageError
from sealtune.evidence import _json
from sealtune.evidence.ledger_proofs import PRUNED_DIGEST

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://sealtune.local/buildtypes/{kind}/v1"
BUILDER_ID = "https://sealtune.local/builder/{workspace}"
#: The step kinds of a pipeline, in their usual order.
KINDS = ("data", "train", "assess", "register", "deploy")
#: The digest algorithms of a ResourceDescriptor's DigestSet that statements use.
DIGEST_ALGORITHMS = ("sha256", "content-sha256")
#: Byproducts may also name a ledger event pruned by retention by its RFC 6962 leaf hash.
BYPRODUCT_ALGORITHMS = (*DIGEST_ALGORITHMS, PRUNED_DIGEST)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}")
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_SECRET_FIELD = re.compile(
    r"(^|[_-])(password|passphrase|passwd|secret|token|pin|private[_-]?key|api[_-]?key|"
    r"credentials?|bearer)$", re.IGNORECASE)


def normalize_digest(value: str, *, what: str) -> str:
    """A digest as ``<algorithm>:<64 lower-case hex>``; bare hex means ``sha256``.

    Algorithms: ``sha256`` (of a file's bytes, or sealtune's tree digest of a
    directory, as the sandbox measurement labels it) and ``content-sha256``
    (a sealed file's content digest, which key rotation does not change).

    Raises:
        UsageError: anything else.
    """
    alg, sep, hexpart = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not sep:
        alg, hexpart = "sha256", value
    if alg not in DIGEST_ALGORITHMS or not isinstance(hexpart, str) or not _HEX64.fullmatch(
            hexpart):
        raise UsageError(f"{what}: not a digest sealtune records",
                         hint="pass 64 lower-case hex digits, optionally prefixed 'sha256:' "
                              "or 'content-sha256:'")
    return f"{alg}:{hexpart}"


def check_name(name: str, *, what: str) -> str:
    """A resource name: 1-128 letters, digits and ``. _ / : -``, starting alphanumeric."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"{what} {name!r} is not allowed",
                         hint="use 1-128 letters, digits, '.', '_', '/', ':' or '-'")
    return name


def check_config(value: Any, *, where: str = "config") -> None:
    """Refuse a config that is not plain JSON or has a field named like a secret.

    Raises:
        UsageError: naming the field.
    """
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, Mapping):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise UsageError(f"{path}: keys must be strings")
                if _SECRET_FIELD.search(key):
                    raise UsageError(f"{path}.{key}: a step config must not hold secrets",
                                     hint="refer to keys by name; drop the field")
                stack.append((f"{path}.{key}", sub))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{n}]", sub) for n, sub in enumerate(item))
        elif not (item is None or isinstance(item, str | int | float | bool)):
            raise UsageError(f"{path}: {type(item).__name__} is not a JSON value")


def timestamp(when: datetime) -> str:
    """An aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds)."""
    if when.tzinfo is None:
        raise UsageError("step times must be timezone-aware")
    return when.astimezone(UTC).strftime(_TIME)


def descriptor(name: str, digest: str, **annotations: Any) -> dict[str, Any]:
    """An in-toto ResourceDescriptor ``{name, digest: {alg: hex}[, annotations]}``.

    Args:
        name: the resource's name.
        digest: ``<algorithm>:<hex>`` (see :func:`normalize_digest`).
        annotations: more facts about it (JSON values).
    """
    alg, _, hexpart = digest.partition(":")
    out: dict[str, Any] = {"name": name, "digest": {alg: hexpart}}
    if annotations:
        out["annotations"] = annotations
    return out


@dataclass(frozen=True)
class StepRecord:
    """What one step did, as the statement states it (digests ``<alg>:<hex>``).

    Attributes:
        name: the step's name (its statement file is ``statements/<name>.dsse.json``).
        kind: one of :data:`KINDS`.
        inputs: input name -> digest.
        outputs: output name -> digest.
        config: the step's config (JSON, no secrets).
        measurement: the sandbox measurement (``digest`` and its parts) or None.
        started_on, finished_on: RFC 3339 UTC timestamps.
        byproducts: ledger events and attached records, as ResourceDescriptors.
    """

    name: str
    kind: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    config: Mapping[str, Any]
    measurement: Mapping[str, Any] | None
    started_on: str
    finished_on: str
    byproducts: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def build_statement(step: StepRecord, *, run_id: str, workspace_id: str) -> bytes:
    """The canonical JSON of the step's in-toto Statement (see the module docstring)."""
    internal = {} if step.measurement is None else {"sandbox": dict(step.measurement)}
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [descriptor(n, d) for n, d in sorted(step.outputs.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE.format(kind=step.kind),
                "externalParameters": dict(step.config),
                "internalParameters": internal,
                "resolvedDependencies": [descriptor(n, d)
                                         for n, d in sorted(step.inputs.items())],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID.format(workspace=workspace_id),
                            "version": {"sealtune": sealtune.__version__}},
                "metadata": {"invocationId": run_id, "startedOn": step.started_on,
                             "finishedOn": step.finished_on},
                "byproducts": [dict(b) for b in step.byproducts],
            },
        },
    }
    return _json.canonical(statement)


@dataclass(frozen=True)
class ParsedStatement:
    """What the verifier reads from a signed statement.

    Attributes:
        kind: the step kind from the build type.
        run_id: ``invocationId``.
        builder: the builder id.
        inputs, outputs: name -> ``<alg>:<hex>`` digest.
        byproducts: name -> the descriptor (``digest``: ``<alg>:<hex>``, ``annotations``).
        measurement: the sandbox measurement, if any.
    """

    kind: str
    run_id: str
    builder: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    byproducts: dict[str, dict[str, Any]]
    measurement: dict[str, Any] | None


def _obj(value: Any, keys: set[str], what: str, *,
         optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict) or not keys <= set(value) <= keys | optional:
        raise IntegrityError(f"{what}: unexpected structure")
    return value


def _descriptors(value: Any, what: str, *,
                 algorithms: tuple[str, ...] = DIGEST_ALGORITHMS) -> dict[str, dict[str, Any]]:
    """name -> ``{"digest": "<alg>:<hex>", "annotations": {...}}``, strictly."""
    if not isinstance(value, list):
        raise IntegrityError(f"{what}: not a list")
    out: dict[str, dict[str, Any]] = {}
    for item in value:
        d = _obj(item, {"name", "digest"}, what, optional=frozenset({"annotations"}))
        digest, annotations = d["digest"], d.get("annotations", {})
        if (not isinstance(d["name"], str) or d["name"] in out or not isinstance(digest, dict)
                or len(digest) != 1 or not isinstance(annotations, dict)):
            raise IntegrityError(f"{what}: a repeated name, or not one digest")
        [(alg, hexpart)] = digest.items()
        if alg not in algorithms or not isinstance(hexpart, str) or not \
                _HEX64.fullmatch(hexpart):
            raise IntegrityError(f"{what}: {d['name']!r} has no digest sealtune records")
        out[d["name"]] = {"digest": f"{alg}:{hexpart}", "annotations": annotations}
    return out


def parse_statement(payload: bytes, *, what: str) -> ParsedStatement:
    """Read a statement written by :func:`build_statement`, strictly.

    Raises:
        IntegrityError: not canonical JSON or not the expected structure.
    """
    doc = _obj(_json.loads_canonical(payload, what=what),
               {"_type", "subject", "predicateType", "predicate"}, what)
    if doc["_type"] != STATEMENT_TYPE or doc["predicateType"] != PREDICATE_TYPE:
        raise IntegrityError(f"{what}: not an in-toto v1 statement with SLSA provenance v1")
    pred = _obj(doc["predicate"], {"buildDefinition", "runDetails"}, what)
    build = _obj(pred["buildDefinition"], {"buildType", "externalParameters",
                                           "internalParameters", "resolvedDependencies"}, what)
    run = _obj(pred["runDetails"], {"builder", "metadata", "byproducts"}, what)
    meta = _obj(run["metadata"], {"invocationId", "startedOn", "finishedOn"}, what)
    builder = _obj(run["builder"], {"id", "version"}, what)
    kinds = {BUILD_TYPE.format(kind=k): k for k in KINDS}
    internal = _obj(build["internalParameters"], set(), what, optional=frozenset({"sandbox"}))
    measurement = internal.get("sandbox")
    if (build["buildType"] not in kinds or not isinstance(meta["invocationId"], str)
            or not isinstance(builder["id"], str)
            or not isinstance(build["externalParameters"], dict)
            or not (measurement is None or isinstance(measurement, dict))):
        raise IntegrityError(f"{what}: unknown build type or malformed fields")
    subjects = _descriptors(doc["subject"], f"{what}: subject")
    deps = _descriptors(build["resolvedDependencies"], f"{what}: resolvedDependencies")
    return ParsedStatement(
        kind=kinds[build["buildType"]], run_id=meta["invocationId"], builder=builder["id"],
        inputs={n: d["digest"] for n, d in deps.items()},
        outputs={n: d["digest"] for n, d in subjects.items()},
        byproducts=_descriptors(run["byproducts"], f"{what}: byproducts",
                                algorithms=BYPRODUCT_ALGORITHMS),
        measurement=measurement)
