"""Ingest: a raw fine-tuning file in, a redacted, minimised, screened, sealed dataset out.

The public surface::

    from sealtune.data.ingest import ingest, scan

    report = scan("raw.jsonl", policy=policy, audit=ws.audit)   # changes nothing
    result = ingest(ws, "raw.jsonl", name="support-v1", policy=policy)

Both stream the input (memory stays bounded by the screening state, about
2 KB per record, plus one record id per record and the detected entities,
18 bytes each) and run the stage in passes over it: the screening checks
first (:func:`sealtune.data.screen.screen`, two or three parses of the
input, records as parsed), the first of which also detects PII and collects
the dataset-wide values (:mod:`sealtune.data.detections`); then one pass
that redacts by policy, every occurrence of a detected value in the record
and in the dataset (:mod:`sealtune.data.redact.spread`), minimises fields
and seals each record (skipping those screening drops) into the data or the
quarantine file; ``scan`` counts instead of sealing. The
sealed files are written through :class:`~sealtune.data.SealedWriter`:
the plaintext never reaches a file, temporary or not. Everything is built in
``datasets/.build-<name>-*`` and renamed into ``datasets/<name>`` only when
complete, so a failed ingest leaves no dataset behind (and one killed
outright leaves a build directory that the next ingest removes:
:mod:`sealtune.data.builds`). The input is hashed
before the first pass and its size, inode and modification time are checked
after the last, so a file changed midway is refused rather than half-described.

Record ids appear in reports and in the audit log, so an id that itself
contains PII is replaced by ``line-<n>``, and a repeated id gets ``~<k>``
appended (the sealed records carry the same ids); both are counted.

``shred_original`` overwrites the raw input once with random bytes and
unlinks it: best effort only, see :mod:`sealtune.data.shred` for why that
cannot guarantee erasure and what does (keep raw data sealed, a raw input
sealed with ``sealtune seal`` is read in memory).

What this protects against: unredacted PII, secrets, unused fields and
poisoned records reaching the training set; plaintext left on disk by the
stage; undocumented provenance (the BOM and findings record what came in,
what policy applied and what went out). What it does not: PII the detectors
miss stays (redaction is as good as detection), screening finds the
published poisoning shapes, not every attack, and the stage trusts the
process and host it runs on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.data import store
from sealtune.data.builds import remove_stale_builds, start_build
from sealtune.data.detections import (
    Detections,
    open_passes,
    redaction_facts,
    redaction_pass,
    unsafe_facts,
)
from sealtune.data.executors import ChunkRunner, executor_name, precompute
from sealtune.data.findings import PiiStats
from sealtune.data.parallel import check_workers as count_workers
from sealtune.data.parallel import close_analyzer
from sealtune.data.passes import (
    Progress,
    RecordPasses,
    changed,
    input_facts,
    policy_facts,
    screen_passes,
)
from sealtune.data.policy import Policy, default_policy
from sealtune.data.redact import AuditSink, DatasetKeys, Redactor
from sealtune.data.screen import ScreenReport
from sealtune.data.shred import shred
from sealtune.data.writing import Written, screen_input, write_dataset
from sealtune.errors import UsageError
from sealtune.keys.versions import CommitGuard

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService
    from sealtune.workspace import Workspace

__all__ = ["IngestResult", "Progress", "ScanReport", "check_request", "ingest", "publish",
           "resolve_policy", "scan"]


@dataclass
class ScanReport:
    """What :func:`scan` found (no record text, no raw value).

    Attributes:
        path: the input.
        policy: policy source and digests.
        input: format, record, skipped-line and renamed-id counts.
        pii: entity counts and the action the policy would take, with masked examples.
        screening: the screening report.
        redaction: record- and dataset-wide redaction: on or off, dictionary counts.
    """

    path: str
    policy: dict[str, str]
    input: dict[str, Any]
    pii: PiiStats
    screening: ScreenReport
    redaction: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": "sealtune.scan/v1", "path": self.path, "policy": self.policy,
                "input": self.input, "pii": self.pii.to_json(),
                "redaction": self.redaction, "screening": self.screening.to_json()}


def resolve_policy(policy: Policy | None, on_error: str | None) -> tuple[Policy, str]:
    """The policy (default: :func:`~sealtune.data.policy.default_policy`) and its error mode."""
    policy = policy if policy is not None else default_policy()
    return policy, on_error or policy.on_error


def scan(path: str | os.PathLike[str], *, policy: Policy | None = None,
         format: str | None = None, text_field: str | None = None, on_error: str | None = None,
         audit: AuditSink | None = None, progress: Progress | None = None,
         keys: KeyService | None = None) -> ScanReport:
    """Findings and statistics for ``path`` under ``policy``; writes nothing but an audit event.

    PII is detected in the first pass and counted, redacted as :func:`ingest`
    would (record- and dataset-wide, with throw-away dataset keys), in a last
    pass over every record read; screening sees the records as parsed.

    Args:
        path: the raw input.
        policy: the data policy (default: :func:`~sealtune.data.policy.default_policy`).
        format: the input format (detected if omitted).
        text_field: plain JSONL / CSV: the field holding the text.
        on_error: ``fail`` or ``skip`` for malformed lines (default: the policy's).
        audit: receives one ``data.scan`` event (e.g. ``workspace.audit``).
        progress: progress callback.
        keys: opens a sealed input (e.g. ``workspace.keys``); the read is audited.

    Raises:
        DataFormatError: the input is unreadable or malformed (fail mode).
        ConfigError: the policy is invalid.
        UsageError: the input is sealed and no ``keys`` were given.
    """
    policy, on_error = resolve_policy(policy, on_error)
    redactor = Redactor(policy, keys=DatasetKeys.generate())
    source, found = open_passes(Path(path), policy, format=format, text_field=text_field,
                                on_error=on_error, progress=progress, keys=keys)
    screening = screen_passes(source, policy)
    pii = PiiStats()
    for _ in redaction_pass(source, found, redactor, pii, phase="counting PII"):
        pass
    report = ScanReport(str(path), policy_facts(policy), input_facts(source), pii, screening,
                        redaction_facts(policy, found))
    if audit is not None:
        audit("data.scan", str(path), details={
            "records": source.read, "skipped_lines": source.skipped,
            "entities": sum(pii.entities.values()), "findings": len(screening.findings),
            "policy_digest": report.policy["digest"], **unsafe_facts(policy)})
    return report


@dataclass(frozen=True)
class IngestResult:
    """The outcome of :func:`ingest`.

    Attributes:
        name: the dataset name.
        path: the dataset directory.
        manifest: the ``dataset.json`` content.
        findings: the ``findings.json`` content.
        quarantined: ids of the quarantined records.
        shredded: whether the raw input was overwritten and removed.
    """

    name: str
    path: Path
    manifest: dict[str, Any]
    findings: dict[str, Any]
    quarantined: tuple[str, ...]
    shredded: bool

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest["counts"])

    @property
    def bom_path(self) -> Path:
        return self.path / store.BOM_FILE


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def _check_input(path: Path, *, shred_original: bool) -> None:
    if not path.is_file():
        raise UsageError(f"{path}: not a readable file", hint="check the path")
    if shred_original:
        if path.is_symlink():
            raise UsageError(f"{path}: is a symbolic link; --shred-original needs the file "
                             "itself", hint="pass the real path")
        if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise UsageError(f"{path}: cannot be overwritten and removed by this user",
                             hint="check permissions, or ingest without --shred-original")


def _wrapped_entries(manifest: Mapping[str, Any]) -> list[str]:
    """``uri@version`` of every wrapped key of the dataset's sealed files."""
    return sorted({k for f in manifest["files"].values() if isinstance(f, dict)
                   for k in f.get("keys", ())})


def _run(ws: Workspace, src: Path, name: str, policy: Policy,
         passes: tuple[RecordPasses, Detections], key_names: Sequence[str],
         extra: dict[str, Any]) -> Written:
    before = _identity(src)
    screened = screen_input(src, passes, policy=policy)
    root = store.datasets_dir(ws)
    removed = remove_stale_builds(root)
    if removed:
        ws.audit("data.cleanup", store.DATASETS, details={"stale_builds_removed": removed})
    build = start_build(root, name)
    try:
        written = write_dataset(build.path, screened, name=name, policy=policy,
                                key_names=key_names, keys=ws.keys, **extra)
        if _identity(src) != before:
            raise changed(src)
        # Published only while every KEK version it was sealed under is live (keys.versions).
        manifest = written.manifest
        with CommitGuard(ws.keys, _wrapped_entries(manifest), what=f"dataset {name!r}") as guard:
            guard.check()
            build.finish(root / name)
    except BaseException:
        build.abandon()
        raise
    return written


def check_request(ws: Workspace, src: Path, *, name: str, shred_original: bool) -> None:
    """Refuse an unusable input path or a dataset name that is taken.

    Raises:
        UsageError: the name is bad or taken, or the input is not a usable file.
    """
    _check_input(src, shred_original=shred_original)
    if (ws.area(store.DATASETS) / store.check_name(name)).exists():
        raise UsageError(f"dataset {name!r} already exists", hint="choose another name")


def publish(ws: Workspace, src: Path, name: str, written: Written, *, policy: Policy,
            shred_original: bool, details: Mapping[str, Any] | None = None) -> IngestResult:
    """Audit a published dataset (``data.ingest``, each quarantine); shred the input if asked.

    Args:
        ws: the workspace.
        src: the raw input.
        name: the dataset name (already in ``datasets/``).
        written: what :func:`write_dataset` wrote.
        policy: the policy it ran under.
        shred_original: overwrite and remove ``src``.
        details: more facts for the ``data.ingest`` event (names and digests).
    """
    manifest = written.manifest
    input_sha = manifest["input"]["sha256"]
    ws.audit("data.ingest", f"dataset/{name}", details={
        "input_sha256": input_sha,
        "output_content_sha256": manifest["files"]["data"]["content_sha256"],
        "counts": dict(manifest["counts"]), "policy_digest": manifest["policy"]["digest"],
        **unsafe_facts(policy), **(details or {})})
    for rid in written.quarantined:
        ws.audit("data.quarantine", f"dataset/{name}/{rid}")
    if shred_original:
        size = shred(src)
        ws.audit("data.shred", str(src), details={
            "bytes": size, "sha256": input_sha,
            "method": "one random overwrite, fsync, unlink",
            "limits": "no guarantee on copy-on-write file systems, SSDs, snapshots, backups"})
    return IngestResult(name, ws.area(store.DATASETS) / name, manifest, written.findings,
                        written.quarantined, shred_original)


def ingest(ws: Workspace, path: str | os.PathLike[str], *, name: str,
           policy: Policy | None = None, format: str | None = None,
           text_field: str | None = None, on_error: str | None = None,
           shred_original: bool = False, key_names: Sequence[str] | None = None,
           progress: Progress | None = None, dataset_keys: DatasetKeys | None = None,
           provenance: Mapping[str, Any] | None = None,
           executor: str | ChunkRunner = "local", workers: int = 1) -> IngestResult:
    """Turn a raw fine-tuning file into the sealed dataset ``datasets/<name>``.

    The raw file may itself be sealed (``sealtune seal``): it is then opened
    with the workspace keys, in memory.

    Args:
        ws: the workspace (keys, audit ledger, where the dataset goes).
        path: the raw input.
        name: the dataset name (must not exist yet).
        policy: the data policy (default: :func:`~sealtune.data.policy.default_policy`).
        format: the input format (detected if omitted).
        text_field: plain JSONL / CSV: the field holding the text.
        on_error: ``fail`` or ``skip`` for malformed lines (default: the policy's).
        shred_original: overwrite and remove the input afterwards (see the module
            docstring for what that cannot guarantee).
        key_names: KEKs to seal under (default: the workspace's default key).
        progress: progress callback.
        dataset_keys: the redaction keys (default: fresh random ones). A pipeline passes
            keys derived from its sealed secret, so that a rerun redacts identically.
        provenance: facts recorded in the manifest as ``pipeline`` (names and digests).
        executor: ``local`` or ``ray`` (PII detection on Ray Data, same outputs:
            :mod:`sealtune.data.executors`).
        workers: PII detection on this many local processes (same outputs:
            :mod:`sealtune.data.parallel`); only with the ``local`` executor.

    Raises:
        UsageError: a bad name, an existing dataset, an unusable input path.
        DataFormatError: a malformed input line (fail mode).
        ConfigError: the policy is invalid.
    """
    src = Path(path)
    check_request(ws, src, name=name, shred_original=shred_original)
    policy, on_error = resolve_policy(policy, on_error)
    keys = [ws.config.default_key] if key_names is None else list(key_names)
    check_workers(workers, executor=executor)
    analyzer = precompute(executor, src, policy, format=format, text_field=text_field,
                          keys=ws.keys)
    passes = open_passes(src, policy, format=format, text_field=text_field, on_error=on_error,
                         progress=progress, keys=ws.keys, analyzer=analyzer, workers=workers)
    try:
        written = _run(ws, src, name, policy, passes, keys, {
            "dataset_keys": dataset_keys, "provenance": provenance})
        ws.publish(store.DATASETS, name, ws.area(store.DATASETS) / name)  # remote storage
    except BaseException as exc:
        ws.audit("data.ingest", f"dataset/{name}", outcome="failure",
                 details={"error": type(exc).__name__})
        raise
    finally:
        close_analyzer(passes[0].analyzer)  # --workers: stops the pool
    return publish(ws, src, name, written, policy=policy, shred_original=shred_original,
                   details=_details(executor, workers))


def _details(executor: str | ChunkRunner, workers: int) -> dict[str, Any] | None:
    """What the ledger records of how the work ran (nothing for one local process)."""
    details: dict[str, Any] = {}
    if executor != "local":
        details["executor"] = executor_name(executor)
    if workers > 1:
        details["workers"] = workers
    return details or None


def check_workers(workers: int, *, executor: str | ChunkRunner = "local") -> int:
    """``workers`` if usable with ``executor``.

    Raises:
        UsageError: not a count from 1 to :data:`~sealtune.data.parallel.MAX_WORKERS`, or
            more than one with another executor than ``local`` (Ray sizes its own).
    """
    if count_workers(workers) > 1 and executor != "local":
        raise UsageError("--workers is for the local executor",
                         hint="leave --workers out with --executor ray (Ray sizes its workers)")
    return workers
