"""Writing one dataset's files: the sealed records, the sealed secret, findings, BOM, manifest.

:func:`screen_input` and :func:`write_dataset` are the data stage's core,
the same wherever they run: in this process
(:func:`sealtune.data.ingest.ingest`, sealing with the workspace's key
service) or inside the data sandbox (:mod:`sealtune.data.worker`, sealing
with the targets the parent made and handed over the key pipe). The first
screens the input; the second, in one pass, redacts, minimises and seals
each kept record into the data or the quarantine file
(through :class:`~sealtune.keys.sealing.SealedWriter`: the plaintext never
reaches a file), seals the dataset secret, and writes ``findings.json``, the
ML-BOM and ``dataset.json`` into a directory the caller owns.

What this protects against: plaintext records on disk (only sealed files
hold record text; findings, BOM and manifest hold counts, digests, policy
facts and masked examples), and two code paths (in process, sandboxed) that
could drift apart. What it does not: publishing (the caller renames the
directory into ``datasets/`` under the key-version check), and what
:mod:`sealtune.data.ingest` says of detection and screening.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sealtune
from sealtune.data import bom, store
from sealtune.data.detections import Detections, redaction_facts, redaction_pass
from sealtune.data.findings import PiiStats
from sealtune.data.passes import RecordPasses, input_facts, policy_facts, screen_passes
from sealtune.data.policy import Policy
from sealtune.data.records import Record
from sealtune.data.redact import DatasetKeys, Redactor
from sealtune.data.screen import ScreenReport
from sealtune.errors import SealtuneError
from sealtune.keys.sealing import SealedFile, SealedWriter, SealingTarget
from sealtune.outputs import fsync_dir, write_atomic

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

__all__ = ["Screened", "Written", "screen_input", "write_dataset"]


@dataclass
class _Build:
    """One ingest in progress: what it reads, where it writes, what it counted.

    It seals with ``keys`` under ``key_names`` (in this process) or, inside the
    sandbox, with the ``targets`` the parent made, by file name.
    """

    keys: KeyService | None
    name: str
    policy: Policy
    source: RecordPasses
    found: Detections
    dir: Path
    key_names: Sequence[str]
    input_sha: str
    input_size: int
    dataset_keys: DatasetKeys | None = None
    provenance: Mapping[str, Any] | None = None
    targets: Mapping[str, SealingTarget] | None = None
    input_name: str | None = None
    sandbox: Mapping[str, Any] | None = None
    pii: PiiStats = field(default_factory=PiiStats)
    counts: Counter[str] = field(default_factory=Counter)
    quarantined: list[str] = field(default_factory=list)


def _writer(b: _Build, file: str, *, digest: bool = False) -> SealedWriter:
    if b.targets is not None:
        return SealedWriter(b.dir / file, target=b.targets[file], digest_plaintext=digest)
    return SealedWriter(b.dir / file, keys=b.keys, key_names=b.key_names,
                        digest_plaintext=digest)


def _seal_secret(b: _Build, secret: bytes) -> SealedFile:
    writer = _writer(b, store.KEYS_FILE)
    try:
        writer.write(secret)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _write_records(b: _Build, decisions: Mapping[str, str],
                   keys: DatasetKeys) -> tuple[SealedFile, SealedFile]:
    redactor = Redactor(b.policy, keys=keys)
    data = _writer(b, store.DATA_FILE, digest=True)
    held = _writer(b, store.QUARANTINE_FILE, digest=True)

    def wanted(record: Record) -> bool:
        if decisions.get(record.id) == "drop":
            b.counts["dropped_screening"] += 1
            return False
        return True

    try:
        for record, line in redaction_pass(b.source, b.found, redactor, b.pii,
                                              phase="redacting and sealing", wanted=wanted):
            action = decisions.get(record.id)
            if line is None:
                b.counts["dropped_redaction"] += 1
            elif action == "quarantine":
                held.write_line(line)
                b.quarantined.append(record.id)
            else:
                if action == "flag":
                    b.counts["flagged"] += 1
                data.write_line(line)
        return data.close(), held.close()
    except BaseException:
        data.abort()
        held.abort()
        raise


def _bom(b: _Build, created: datetime, outputs: Sequence[SealedFile]) -> str:
    stats = b.source.stats
    src = bom.DataFile("input", b.input_name or b.source.path.name, b.input_sha, b.input_size,
                       b.source.read,
                       {"format": stats.format, "skipped-lines": str(b.source.skipped)})
    outs = [bom.DataFile(role, f.name, f.content_sha256, f.size, f.lines)
            for role, f in zip(("data", "quarantine"), outputs, strict=True)]
    facts = policy_facts(b.policy)
    props: dict[str, object] = {
        "policy:redaction-digest": facts["redaction_digest"],
        "policy:screening-digest": facts["screening_digest"],
        "policy:digest": facts["digest"], "policy:source": Path(facts["source"]).name,
        **{f"pii:{t}": n for t, n in sorted(b.pii.entities.items())},
        **{f"count:{k}": n for k, n in sorted(b.counts.items())}}
    return bom.build_bom(name=b.name, created=created, input_file=src, outputs=outs,
                         properties=props)


def _write_build(b: _Build, report: ScreenReport) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write every file of the dataset into the build directory; return manifest, findings."""
    dataset_keys = b.dataset_keys or DatasetKeys.generate()
    data, held = _write_records(b, report.decisions(), dataset_keys)
    secret = _seal_secret(b, dataset_keys.secret)
    created = datetime.now(UTC).replace(microsecond=0)
    stats = b.source.stats
    b.counts.update({"records_read": b.source.read, "records_out": data.lines,
                     "quarantined": held.lines, "skipped_lines": b.source.skipped,
                     "entities": sum(b.pii.entities.values()),
                     **{f"redacted_{scope}_wide": sum(b.pii.spread.get(scope, {}).values())
                        for scope in ("record", "dataset")}})
    findings = {"format": "sealtune.findings/v1", "dataset": b.name,
                "policy": policy_facts(b.policy), "input": input_facts(b.source),
                "counts": dict(b.counts),
                "pii": {"scope": "records kept (data and quarantine)", **b.pii.to_json()},
                "redaction": redaction_facts(b.policy, b.found),
                "screening": report.to_json()}
    manifest = {
        "format": store.MANIFEST_FORMAT, "name": b.name,
        "created": created.isoformat().replace("+00:00", "Z"),
        "sealtune_version": sealtune.__version__,
        "input": {"name": b.input_name or b.source.path.name, "sha256": b.input_sha,
                  "size": b.input_size, "format": stats.format},
        "counts": dict(b.counts), "policy": policy_facts(b.policy),
        "keys": {"kek": list(data.keys), "dataset_secret": store.KEYS_FILE},
        "files": {"data": data.as_dict(), "quarantine": held.as_dict(),
                  "keys": secret.as_dict(), "findings": store.FINDINGS_FILE,
                  "bom": store.BOM_FILE}}
    if b.provenance is not None:
        manifest["pipeline"] = dict(b.provenance)
    if b.sandbox is not None:  # what ran it: the data sandbox's stage and measurement
        manifest["sandbox"] = dict(b.sandbox)
    store.write_json(b.dir / store.FINDINGS_FILE, findings)
    write_atomic(b.dir / store.BOM_FILE, _bom(b, created, (data, held)).encode("utf-8"))
    store.write_json(b.dir / store.MANIFEST_FILE, manifest)
    fsync_dir(b.dir)
    return manifest, findings


@dataclass(frozen=True)
class Written:
    """A dataset written into a build directory (:func:`write_dataset`).

    Attributes:
        manifest: the ``dataset.json`` content.
        findings: the ``findings.json`` content.
        quarantined: ids of the quarantined records.
    """

    manifest: dict[str, Any]
    findings: dict[str, Any]
    quarantined: tuple[str, ...]


@dataclass(frozen=True)
class Screened:
    """An input read, hashed and screened (:func:`screen_input`), ready to be written.

    Attributes:
        source: the passes over the input.
        found: the PII detected in the first pass.
        sha256: hex SHA-256 of the input as it is on disk (sealed or not).
        size: its size in bytes.
        report: the screening report.
    """

    source: RecordPasses
    found: Detections
    sha256: str
    size: int
    report: ScreenReport


def screen_input(src: Path, passes: tuple[RecordPasses, Detections], *, policy: Policy,
                 input_name: str | None = None) -> Screened:
    """Hash ``src`` and run the screening passes (the first detects PII); write nothing.

    Raises:
        SealtuneError: no records to ingest.
    """
    source, found = passes
    input_sha, input_size = store.sha256_file(src)
    report = screen_passes(source, policy)
    if not source.ids:
        raise SealtuneError(f"{input_name or src}: no records to ingest",
                            hint="check the format and --on-error")
    return Screened(source, found, input_sha, input_size, report)


def write_dataset(out: Path, screened: Screened, *, name: str, policy: Policy,
                  key_names: Sequence[str], keys: KeyService | None = None,
                  targets: Mapping[str, SealingTarget] | None = None,
                  input_name: str | None = None, dataset_keys: DatasetKeys | None = None,
                  provenance: Mapping[str, Any] | None = None,
                  sandbox: Mapping[str, Any] | None = None) -> Written:
    """Redact and seal a screened input into the directory ``out``: the dataset's files.

    The stage's core, the same in this process (:func:`~sealtune.data.ingest.ingest`,
    sealing with ``keys``) and inside the data sandbox (:mod:`sealtune.data.worker`,
    sealing with the ``targets`` the parent made, by file name).

    Args:
        out: where the files go.
        screened: from :func:`screen_input`.
        name: the dataset name.
        policy: the data policy.
        key_names: the KEKs (recorded; with ``keys``, sealed under).
        keys: the key service (in this process).
        targets: sealing targets for the sealed files, by file name (in the sandbox).
        input_name: the input's name in the manifest and BOM (default: the source's).
        dataset_keys: the redaction keys (default: fresh random ones).
        provenance: recorded in the manifest as ``pipeline``.
        sandbox: recorded in the manifest as ``sandbox`` (stage and measurement).
    """
    b = _Build(keys, name, policy, screened.source, screened.found, out, key_names,
               screened.sha256, screened.size, dataset_keys=dataset_keys,
               provenance=provenance, targets=targets, input_name=input_name,
               sandbox=sandbox)
    manifest, findings = _write_build(b, screened.report)
    return Written(manifest, findings, tuple(b.quarantined))
