"""Record a run's steps and write its evidence bundle (a directory or a tar).

:class:`EvidenceRecorder` is what the pipeline runner calls: ``step(...)``
after each step with what it read and wrote (by digest), its config, the
sandbox measurement and its ledger events; ``attach_bom`` /
``attach_training_record`` for the dataset ML-BOM and the training record
(:mod:`sealtune.evidence.attach` builds both from a workspace),
``attach_gate_report`` for the release gate's signed report; then
``write(out)``. Writing signs one in-toto statement per step and a manifest
listing every file's SHA-256 with the workspace's evidence key
(:mod:`sealtune.evidence.signer`), proves every event against the ledger's
newest signed global checkpoint, cosigned by the configured witnesses when
the workspace has a witness policy (:mod:`sealtune.evidence.ledger_proofs`), puts the public keys
under ``keys/`` for convenience, and writes it all at once: a directory built
aside and renamed into place, or a deterministic tar written atomically. The
write is recorded in the audit log as ``evidence.bundle_written``.

What this protects against: a step whose inputs come from nowhere (each
input must be a declared run input or an earlier step's output), a half
written bundle under the final name, secrets in a step's config (see
:func:`sealtune.evidence.statement.check_config`), sample text in the
training record (only figures, digests and ids are kept). What it does not:
check that the digests the runner passes are what the steps really used
(the runner computes them), or keep the bundle confidential (it holds names,
digests, figures and the ledger events of the run; no data, no keys).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import UsageError
from sealtune.evidence import _json, dsse, layout, ledger_proofs
from sealtune.evidence.pins import public_pem
from sealtune.evidence.signer import EvidenceSigner, evidence_signer
from sealtune.evidence.statement import (
    KINDS,
    StepRecord,
    build_statement,
    check_config,
    check_name,
    descriptor,
    normalize_digest,
    timestamp,
)
from sealtune.outputs import fsync_dir, open_output, write_atomic

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

MANIFEST_FORMAT = "sealtune.bundle/v1"
MANIFEST_TYPE = "application/vnd.sealtune.bundle-manifest+json"


@dataclass(frozen=True)
class WrittenBundle:
    """What :meth:`EvidenceRecorder.write` wrote.

    Attributes:
        path: the bundle directory or tar.
        kind: ``directory`` or ``tar``.
        files: how many files (the manifest included).
        keyid: the evidence key that signed it.
        manifest_sha256: hex SHA-256 of ``manifest.json`` (names the bundle's content).
        tar_sha256: hex SHA-256 of the tar's bytes (None for a directory).
        events: ledger events proven.
        ledger_size: the size of the global checkpoint they are proven against.
        cosigned: witnesses whose cosignature it carries.
        witnesses_required: the workspace's witness ``k`` (0: no witness policy).
    """

    path: Path
    kind: str
    files: int
    keyid: str
    manifest_sha256: str
    tar_sha256: str | None = None
    events: int = 0
    ledger_size: int = 0
    cosigned: int = 0
    witnesses_required: int = 0


@dataclass
class _Step:
    record: StepRecord
    seqs: tuple[int, ...]
    attached: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _digests(items: Mapping[str, str], *, what: str) -> dict[str, str]:
    return {check_name(n, what=f"{what} name"): normalize_digest(d, what=f"{what} {n!r}")
            for n, d in items.items()}


class EvidenceRecorder:
    """Collects a run's steps and writes its bundle.

    Args:
        ws: the workspace (evidence key, ledger).
        run_id: the run's id (``invocationId`` of every statement).
        inputs: the run's external inputs (raw data, base model): name -> digest.
    """

    def __init__(self, ws: Workspace, run_id: str, *,
                 inputs: Mapping[str, str] | None = None) -> None:
        self.ws = ws
        self.run_id = check_name(run_id, what="run id")
        self.inputs = _digests(inputs or {}, what="run input")
        self._steps: dict[str, _Step] = {}
        self._files: dict[str, bytes] = {}

    def add_input(self, name: str, digest: str) -> None:
        """Declare one more external input of the run."""
        self.inputs.update(_digests({name: digest}, what="run input"))

    def step(self, name: str, kind: str, *, inputs: Mapping[str, str],
             outputs: Mapping[str, str], config: Mapping[str, Any],
             measurement: Mapping[str, Any] | None = None, ledger_seqs: Sequence[int] = (),
             started_on: datetime | None = None, finished_on: datetime | None = None) -> None:
        """Record a finished step.

        Args:
            name: the step's name (``[a-z][a-z0-9_-]*``, unique in the run).
            kind: one of :data:`~sealtune.evidence.statement.KINDS`.
            inputs: what it read: name -> digest (``sha256:<hex>`` or hex).
            outputs: what it wrote: name -> digest.
            config: its settings (JSON; keys by name only, never secrets).
            measurement: the sandbox measurement (with its ``digest``), if sandboxed.
            ledger_seqs: the sequence numbers of its audit-log events.
            started_on, finished_on: when it ran (default: now).

        Raises:
            UsageError: a bad name or kind, a repeated step, an input that is
                neither a run input nor an earlier output, a secret-looking config.
        """
        if not layout.STEP_NAME.fullmatch(name) or name in self._steps:
            raise UsageError(f"step name {name!r} is not allowed or already recorded",
                             hint="use a new lower-case name: letters, digits, '_' or '-'")
        if kind not in KINDS:
            raise UsageError(f"step kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
        ins, outs = _digests(inputs, what="input"), _digests(outputs, what="output")
        known = set(self.inputs.values()) | {d for s in self._steps.values()
                                             for d in s.record.outputs.values()}
        for n, d in ins.items():
            if d not in known:
                raise UsageError(f"step {name}: input {n!r} is neither a run input nor an "
                                 "earlier step's output",
                                 hint="declare it with inputs= or add_input()")
        check_config(dict(config), where=f"step {name} config")
        if measurement is not None:
            check_config(dict(measurement), where=f"step {name} measurement")
            if not isinstance(measurement.get("digest"), str):
                raise UsageError(f"step {name}: the measurement has no digest")
        if any(type(s) is not int or s < 1 for s in ledger_seqs):
            raise UsageError(f"step {name}: ledger sequence numbers are positive integers")
        end = finished_on or datetime.now(UTC)
        record = StepRecord(name, kind, ins, outs, dict(config),
                            None if measurement is None else dict(measurement),
                            timestamp(started_on or end), timestamp(end))
        self._steps[name] = _Step(record, tuple(sorted(set(ledger_seqs))))

    def _attach(self, step: str, path: str, data: bytes, **annotations: Any) -> None:
        if step not in self._steps:
            raise UsageError(f"no step {step!r} recorded yet", hint="call step() first")
        if not layout.allowed(path) or path in self._files:
            raise UsageError(f"{path!r} is not a bundle file name, or is already attached")
        self._files[path] = data
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self._steps[step].attached.append((path, descriptor(path, digest, **annotations)))

    def attach_bom(self, step: str, *, dataset: str, bom: bytes) -> None:
        """Attach the dataset's CycloneDX ML-BOM as ``bom/<dataset>.cdx.json`` to ``step``."""
        self._attach(step, f"bom/{dataset}.cdx.json", bom)

    def attach_training_record(self, step: str, *, job: str, record: Mapping[str, Any]) -> None:
        """Attach a training record (figures only) as ``training/<job>.json`` to ``step``.

        The statement names it with ε and δ in its annotations, so a verifier
        can compare them with the record.
        """
        check_config(dict(record), where=f"training record {job}")
        privacy = record.get("privacy") or {}
        self._attach(step, f"training/{job}.json", _json.canonical(dict(record)) + b"\n",
                     epsilon_spent=privacy.get("epsilon_spent"), delta=privacy.get("delta"))

    def attach_gate_report(self, step: str, *, assessment: str, envelope: bytes,
                           model_digest: str, verdict: str) -> None:
        """Attach the gate's signed report as ``gate/<assessment>.dsse.json`` to ``step``.

        The statement names it with the model digest and the verdict in its
        annotations; the verifier checks the envelope's signature and that the
        report says the same, for the model the step's statement names.
        """
        self._attach(step, f"gate/{assessment}.dsse.json", envelope,
                     model_digest=normalize_digest(model_digest, what="gate model digest"),
                     verdict=verdict)

    def write(self, out: Path, *, tar: bool = False) -> WrittenBundle:
        """Sign everything and write the bundle to ``out`` (must not exist).

        Args:
            out: the bundle directory, or the tar file with ``tar``.
            tar: write a deterministic tar instead of a directory.

        Raises:
            UsageError: nothing recorded, or ``out`` exists.
            LedgerError: an event does not exist or cannot be proven.
            PolicyViolation: the workspace's witness policy is not met (nothing written).
            IntegrityError: a witness saw a longer or different ledger history.
        """
        if not self._steps:
            raise UsageError("no step was recorded; nothing to put in a bundle")
        if os.path.lexists(out):
            raise UsageError(f"{out} already exists", hint="name a new bundle path")
        signer = evidence_signer(self.ws)
        files, ledger = self._sign_all(signer)
        manifest = files[layout.MANIFEST]
        tar_sha256 = None
        if tar:
            tar_sha256 = _write_tar(out, files)
        else:
            _write_dir(out, files)
        written = WrittenBundle(out, "tar" if tar else "directory", len(files), signer.keyid,
                                hashlib.sha256(manifest).hexdigest(), tar_sha256,
                                len(ledger.events), ledger.size, ledger.cosigned,
                                ledger.required)
        self.ws.audit("evidence.bundle_written", f"run/{self.run_id}", details={
            "kind": written.kind, "files": written.files, "keyid": written.keyid,
            "manifest_sha256": written.manifest_sha256, "steps": list(self._steps),
            "ledger_size": ledger.size, "cosigned": ledger.cosigned})
        return written

    def _sign_all(self, signer: EvidenceSigner) -> tuple[dict[str, bytes],
                                                         ledger_proofs.LedgerEvidence]:
        seqs = [s for step in self._steps.values() for s in step.seqs]
        if len(seqs) != len(set(seqs)):
            raise UsageError("a ledger event was recorded under two steps")
        ledger = ledger_proofs.collect(self.ws, seqs, run_id=self.run_id)
        files = dict(self._files)
        files.update(ledger.files)
        workspace_id = self.ws.config.workspace_id
        for name, step in self._steps.items():
            byproducts = [descriptor(f"ledger/{s}", ledger.events[s]) for s in step.seqs]
            byproducts += [d for _, d in step.attached]
            record = replace(step.record, byproducts=tuple(byproducts))
            payload = build_statement(record, run_id=self.run_id, workspace_id=workspace_id)
            files[f"statements/{name}.dsse.json"] = dsse.sign(
                payload, signer=signer.sign, signer_keyid=signer.keyid)
        ledger_key = self.ws.ledger_signer().verifier_key
        files[layout.EVIDENCE_KEY] = public_pem(signer.public_key).encode("ascii")
        files[layout.LEDGER_KEY] = ledger_key.encode("ascii") + b"\n"
        layout.check_files(files)
        files[layout.MANIFEST] = dsse.sign(self._manifest(files, signer.keyid, ledger_key),
                                           payload_type=MANIFEST_TYPE, signer=signer.sign,
                                           signer_keyid=signer.keyid)
        return files, ledger

    def _manifest(self, files: Mapping[str, bytes], keyid: str, ledger_key: str) -> bytes:
        return _json.canonical({
            "format": MANIFEST_FORMAT, "run_id": self.run_id,
            "workspace_id": self.ws.config.workspace_id,
            "created": max(s.record.finished_on for s in self._steps.values()),
            "steps": list(self._steps), "inputs": dict(self.inputs),
            "evidence_key": keyid,
            "ledger": {"origin": self.ws.origin, "key": ledger_key},
            "files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                      for n, d in sorted(files.items())}})


def _write_tar(out: Path, files: Mapping[str, bytes]) -> str:
    data = layout.render_tar(files)
    with open_output(out, atomic="require", overwrite=False) as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def _write_dir(out: Path, files: Mapping[str, bytes]) -> None:
    """Build the directory beside ``out`` and rename it into place when complete."""
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not a directory", hint="create it first")
    build = out.parent / f".{out.name}.partial-{os.urandom(4).hex()}"
    build.mkdir(mode=0o700)
    try:
        for name in sorted(files):
            target = build / name
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(target, files[name])
        for folder in sorted({p.parent for p in map(Path, files)}, reverse=True):
            fsync_dir(build / folder)
        if os.path.lexists(out):
            raise UsageError(f"{out} appeared while the bundle was written")
        os.rename(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    fsync_dir(out.parent)
