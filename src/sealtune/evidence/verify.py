"""Verify an evidence bundle offline against pinned keys, check by check.

:func:`verify_bundle` reads a bundle directory or tar
(:mod:`sealtune.evidence.layout`) and runs, in order:

``bundle.read``        only regular files under the layout's names, no links;
                       a tar must be byte-for-byte canonical
``keys.evidence``      which pinned evidence key(s) are trusted (a bundle's own
                       ``keys/evidence.pub`` only if a pinned key id names it)
``manifest.signature`` ``manifest.json`` is a DSSE envelope signed by a pinned key
``manifest.files``     every other file is listed with its size and SHA-256;
                       none missing, none extra
``statement.<step>``   each step's statement is signed by a pinned key, is an
                       in-toto v1 / SLSA provenance v1 statement of this run
                       and this workspace's builder; a sandbox measurement
                       (the data and the train step's) has all its parts and
                       its digest is the one they fold into
``statements.chain``   each step's inputs are run inputs or earlier outputs;
                       the first step reads only run inputs
``ledger.key``         the ledger key: pinned (``--ledger-key`` or a pin file),
                       or else the one the signed manifest names
``ledger.checkpoint``  a global checkpoint signed by that key, of the ledger's origin
``ledger.proofs``      every event a statement names is proven included in it, leaf
                       digest and all, and no other
``ledger.witnesses``   at least ``k`` pinned witnesses cosigned that checkpoint
                       (with no witness pinned: says so, and passes)
``bom.<dataset>``      the BOM's SHA-256 is the one a statement names
``training.<job>``     the record's digest and ε / δ are those a statement names
``gate.<assessment>``  the gate report's envelope is signed by a pinned key, is a
                       valid report, and names the model digest and verdict its
                       statement names; the model is the one that statement
                       names as its output and the weights those it read (which
                       ``statements.chain`` ties to the train step's output)

Any failure makes the report fail (the CLI exits 3). If the manifest cannot
be trusted, the checks that depend on it are not run.

What a pass shows: the holder of a pinned evidence key signed these
statements and this file list, and the ledger signed by the (pinned) ledger
key holds these events (and, with pinned witnesses, that ``k`` of them saw
that same checkpoint, consistent with all they had seen before). What it does
not: that the host ran honest code or that the statements are true (that is
attestation's part), or anything about files not in the bundle.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sealtune.core.note import NoteVerifier
from sealtune.errors import ConfigError, SealtuneError, UsageError
from sealtune.evidence import _json, dsse, layout, ledger_proofs
from sealtune.evidence.bundle import MANIFEST_FORMAT, MANIFEST_TYPE
from sealtune.evidence.pins import Pins, load_public_pem
from sealtune.evidence.report import BundleReport
from sealtune.evidence.statement import (
    BUILDER_ID,
    ParsedStatement,
    normalize_digest,
    parse_statement,
)
from sealtune.sandbox.measurement import Measurement

_DIGEST = re.compile(r"(sha256|content-sha256):[0-9a-f]{64}")
_LEDGER_EVENT = re.compile(r"ledger/([1-9][0-9]{0,17})")
_MANIFEST_KEYS = {"format", "run_id", "workspace_id", "created", "steps", "inputs",
                  "evidence_key", "ledger", "files"}


def verify_bundle(path: Path, pins: Pins) -> BundleReport:
    """Verify the bundle at ``path`` (directory or tar) against ``pins``.

    Returns:
        The report; ``report.raise_if_failed()`` raises IntegrityError (exit 3).

    Raises:
        UsageError: nothing at ``path``.
    """
    report = BundleReport(str(path))
    try:
        files, kind = layout.read_bundle(path)
    except UsageError:
        raise  # nothing there: a usage error (exit 2), not a failed check
    except SealtuneError as exc:
        report.add("bundle.read", False, exc.message)
        return report
    except OSError as exc:
        report.add("bundle.read", False, f"{path}: {exc.strerror or type(exc).__name__}")
        return report
    report.add("bundle.read", True, f"a {kind} of {len(files)} files, all under known names")
    return verify_files(files, pins, report=report)


def verify_files(files: Mapping[str, bytes], pins: Pins, *,
                 report: BundleReport | None = None) -> BundleReport:
    """Run every check after ``bundle.read`` on a bundle's files (name -> bytes)."""
    report = report or BundleReport("<memory>")
    try:
        _run(files, pins, report)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # fail closed, by class
        report.add("bundle.content", False, f"malformed content ({type(exc).__name__})")
    return report


def _run(files: Mapping[str, bytes], pins: Pins, report: BundleReport) -> None:
    trusted = _evidence_keys(files, pins, report)
    manifest = _manifest(files, trusted, report)
    if manifest is None:
        return
    _files(files, manifest, report)
    statements = {step: _statement(files, step, manifest, trusted, report)
                  for step in manifest["steps"]}
    parsed = {k: v for k, v in statements.items() if v is not None}
    _chain(manifest, statements, report)
    _ledger(files, manifest, parsed, pins, report)
    _attachments(files, parsed, report)
    _gates(files, parsed, trusted, report)


def _evidence_keys(files: Mapping[str, bytes], pins: Pins, report: BundleReport) -> list[Any]:
    trusted = list(pins.evidence)
    notes = [f"pinned key {dsse.keyid(k)}" for k in pins.evidence]
    if pins.evidence_ids:
        try:
            own = load_public_pem(files.get(layout.EVIDENCE_KEY, b""), what=layout.EVIDENCE_KEY)
        except ConfigError:
            own = None
        if own is not None and dsse.keyid(own) in pins.evidence_ids:
            trusted.append(own)
            notes.append(f"{layout.EVIDENCE_KEY} has pinned id {dsse.keyid(own)}")
        else:
            notes.append(f"{layout.EVIDENCE_KEY} does not have a pinned key id")
    ok = bool(trusted)
    report.add("keys.evidence", ok, "; ".join(notes) if ok else
               "no pinned evidence key: " + "; ".join(notes or ["none given"]))
    return trusted


def _check_manifest(doc: Any) -> dict[str, Any]:
    bad = SealtuneError("manifest.json: not a sealtune.bundle/v1 manifest")
    if not isinstance(doc, dict) or set(doc) != _MANIFEST_KEYS or doc["format"] != \
            MANIFEST_FORMAT:
        raise bad
    steps, inputs, files, ledger = doc["steps"], doc["inputs"], doc["files"], doc["ledger"]
    if (not isinstance(steps, list) or not steps or len(set(steps)) != len(steps)
            or not all(isinstance(s, str) and layout.STEP_NAME.fullmatch(s) for s in steps)
            or not isinstance(inputs, dict)
            or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in inputs.values())
            or not isinstance(ledger, dict) or set(ledger) != {"origin", "key"}
            or not all(isinstance(v, str) for v in ledger.values())
            or not all(isinstance(doc[k], str) for k in ("run_id", "workspace_id", "created",
                                                         "evidence_key"))
            or not isinstance(files, dict)):
        raise bad
    for name, entry in files.items():
        if (not layout.allowed(name) or name == layout.MANIFEST or not isinstance(entry, dict)
                or set(entry) != {"sha256", "size"} or type(entry["size"]) is not int
                or not isinstance(entry["sha256"], str)):
            raise bad
    return doc


def _manifest(files: Mapping[str, bytes], trusted: list[Any],
              report: BundleReport) -> dict[str, Any] | None:
    try:
        payload, signer = dsse.open_envelope(files.get(layout.MANIFEST, b""), trusted,
                                             what=layout.MANIFEST, payload_type=MANIFEST_TYPE)
        doc = _check_manifest(_json.loads_canonical(payload, what=layout.MANIFEST))
    except SealtuneError as exc:
        report.add("manifest.signature", False,
                   f"{exc.message}; nothing else can be trusted, so nothing else was checked")
        return None
    report.add("manifest.signature", True,
               f"signed by pinned key {signer}: run {doc['run_id']}, steps "
               f"{', '.join(doc['steps'])}, {len(doc['files'])} files listed")
    return doc


def _files(files: Mapping[str, bytes], manifest: dict[str, Any], report: BundleReport) -> None:
    listed: dict[str, dict[str, Any]] = manifest["files"]
    present = set(files) - {layout.MANIFEST}
    problems = [f"{n} is missing" for n in sorted(set(listed) - present)]
    problems += [f"{n} is not listed in the manifest" for n in sorted(present - set(listed))]
    for name in sorted(present & set(listed)):
        data, entry = files[name], listed[name]
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"{name} does not match its listed size and SHA-256")
    wanted = {f"statements/{s}.dsse.json" for s in manifest["steps"]}
    problems += [f"{n} (a step's statement) is not listed" for n in sorted(wanted - set(listed))]
    problems += [f"{n} is a statement of no listed step" for n in sorted(listed)
                 if layout.STATEMENT.fullmatch(n) and n not in wanted]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        report.add("manifest.files", False, problems[0] + more)
    else:
        report.add("manifest.files", True,
                   f"all {len(listed)} files present with their listed size and SHA-256; "
                   "no extra files")


def _statement(files: Mapping[str, bytes], step: str, manifest: dict[str, Any],
               trusted: list[Any], report: BundleReport) -> ParsedStatement | None:
    name = f"statements/{step}.dsse.json"
    try:
        payload, signer = dsse.open_envelope(files.get(name, b""), trusted, what=name)
        st = parse_statement(payload, what=name)
        if st.run_id != manifest["run_id"]:
            raise SealtuneError(f"{name}: a statement of run {st.run_id!r}, not of this run")
        if st.builder != BUILDER_ID.format(workspace=manifest["workspace_id"]):
            raise SealtuneError(f"{name}: built by another builder than this workspace")
        if st.measurement is not None:
            _check_measurement(st.measurement, what=name)
    except SealtuneError as exc:
        report.add(f"statement.{step}", False, exc.message)
        return None
    sandbox = "" if st.measurement is None else \
        f", sandbox measurement {st.measurement.get('digest')}"
    report.add(f"statement.{step}", True,
               f"signed by pinned key {signer}: a {st.kind} step with {len(st.inputs)} inputs "
               f"and {len(st.outputs)} outputs{sandbox}")
    return st


def _check_measurement(measurement: Mapping[str, Any], *, what: str) -> None:
    """The measurement has its parts, and its digest is the one they fold into."""
    try:
        parts = Measurement(code=str(measurement["code"]), config=str(measurement["config"]),
                            base_model=measurement["base_model"],
                            inputs=dict(measurement["inputs"]))
        folded = parts.digest
    except (KeyError, TypeError, ValueError):
        raise SealtuneError(f"{what}: the sandbox measurement lacks its parts") from None
    if measurement.get("digest") != folded:
        raise SealtuneError(f"{what}: the sandbox measurement's digest is not that of its "
                            "parts")


def _chain(manifest: dict[str, Any], statements: Mapping[str, ParsedStatement | None],
           report: BundleReport) -> None:
    available = set(manifest["inputs"].values())
    for n, step in enumerate(manifest["steps"]):
        st = statements[step]
        if st is None:
            report.add("statements.chain", False, f"statement {step} could not be read")
            return
        for name, digest in sorted(st.inputs.items()):
            if digest not in available:
                where = "a listed run input" if n == 0 else \
                    "a listed run input or an earlier step's output"
                report.add("statements.chain", False,
                           f"step {step}: input {name!r} is not {where}")
                return
        available |= set(st.outputs.values())
    report.add("statements.chain", True,
               f"{len(manifest['steps'])} steps chain: every input is a listed run input "
               "or an earlier step's output")


def _ledger_verifiers(manifest: dict[str, Any], pins: Pins,
                      report: BundleReport) -> list[NoteVerifier] | None:
    named = manifest["ledger"]["key"]
    if pins.ledger:
        if named not in {v.key_string for v in pins.ledger}:
            report.add("ledger.key", False, "the manifest names a ledger key that is not pinned")
            return None
        report.add("ledger.key", True, f"pinned: {named}")
        return list(pins.ledger)
    try:
        verifier = NoteVerifier.from_key_string(named)
    except SealtuneError as exc:
        report.add("ledger.key", False, f"manifest ledger key: {exc.message}")
        return None
    report.add("ledger.key", True, f"{named}: not pinned; vouched for by the signed manifest "
               "only (pin it with --ledger-key for independent trust)")
    return [verifier]


def _ledger(files: Mapping[str, bytes], manifest: dict[str, Any],
            statements: Mapping[str, ParsedStatement], pins: Pins,
            report: BundleReport) -> None:
    verifiers = _ledger_verifiers(manifest, pins, report)
    events: dict[int, str] = {}
    for st in statements.values():
        for name, d in st.byproducts.items():
            m = _LEDGER_EVENT.fullmatch(name)
            if m is not None:
                events[int(m.group(1))] = d["digest"]
    if verifiers is None:
        return
    for check in ledger_proofs.check(files, events=events, verifiers=verifiers,
                                     origin=manifest["ledger"]["origin"],
                                     witnesses=pins.witness_policy()):
        report.add(check.name, check.ok, check.explanation)


def _named(statements: Mapping[str, ParsedStatement], path: str) -> dict[str, Any] | None:
    for st in statements.values():
        if path in st.byproducts:
            return st.byproducts[path]
    return None


def _attachments(files: Mapping[str, bytes], statements: Mapping[str, ParsedStatement],
                 report: BundleReport) -> None:
    for path in sorted(files):
        bom, training = layout.BOM.fullmatch(path), layout.TRAINING.fullmatch(path)
        match = bom or training
        if match is None:
            continue
        name = f"{'bom' if bom else 'training'}.{match.group(1)}"
        named = _named(statements, path)
        digest = "sha256:" + hashlib.sha256(files[path]).hexdigest()
        if named is None or named["digest"] != digest:
            report.add(name, False, f"{path}: no statement names this file with its SHA-256")
        elif bom is not None:
            report.add(name, True, f"{path}: {digest[:23]}… is the digest a statement names")
        else:
            _training(path, files[path], named, name, report)


def _figure(value: object) -> bool:
    return value is None or (type(value) in (int, float))


def _training(path: str, data: bytes, named: dict[str, Any], name: str,
              report: BundleReport) -> None:
    try:
        record = _json.loads(data.rstrip(b"\n"), what=path)
    except SealtuneError as exc:
        report.add(name, False, exc.message)
        return
    privacy = record.get("privacy") if isinstance(record, dict) else None
    privacy = privacy if isinstance(privacy, dict) else {}
    eps, delta = privacy.get("epsilon_spent"), privacy.get("delta")
    ann = named["annotations"]
    if not (_figure(eps) and _figure(delta)) or (eps, delta) != (
            ann.get("epsilon_spent"), ann.get("delta")):
        report.add(name, False, f"{path}: ε or δ differ from the statement's")
        return
    what = "no differential privacy" if eps is None else f"ε {eps:.4g} at δ {delta}"
    report.add(name, True, f"{path}: named by a statement; {what}, as the statement says")


def _gates(files: Mapping[str, bytes], statements: Mapping[str, ParsedStatement],
           trusted: list[Any], report: BundleReport) -> None:
    for path in sorted(files):
        match = layout.GATE.fullmatch(path)
        if match is None:
            continue
        name = f"gate.{match.group(1)}"
        digest = "sha256:" + hashlib.sha256(files[path]).hexdigest()
        naming = [st for st in statements.values()
                  if st.byproducts.get(path, {}).get("digest") == digest]
        if len(naming) != 1:
            report.add(name, False, f"{path}: no statement names this file with its SHA-256")
            continue
        try:
            report.add(name, True, _gate(path, files[path], naming[0], trusted))
        except SealtuneError as exc:
            report.add(name, False, exc.message)


def _gate(path: str, data: bytes, st: ParsedStatement, trusted: list[Any]) -> str:
    from sealtune.evidence.gate import verify_gate_report

    annotations = st.byproducts[path].get("annotations") or {}
    model = annotations.get("model_digest")
    if not isinstance(model, str) or st.outputs.get("model") != model:
        raise SealtuneError(f"{path}: its statement does not name the assessed model as "
                            "its output")
    doc = verify_gate_report(data, trusted, model_digest=model, require_pass=False,
                             what=path)
    if doc["verdict"] != annotations.get("verdict"):
        raise SealtuneError(f"{path}: the report's verdict is not the one its statement names")
    weights = doc["model"].get("weights_sha256")
    if weights is not None and normalize_digest(weights, what=path) != st.inputs.get("weights"):
        raise SealtuneError(f"{path}: the report's weights are not those its step read")
    return (f"{path}: signed by a pinned key; verdict {doc['verdict']} for model "
            f"{model[:23]}…, the model its {st.kind} statement names")
