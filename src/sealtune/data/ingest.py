"""Ingest: a raw fine-tuning file in, a redacted, minimised, screened, sealed dataset out.

The public surface::

    from sealtune.data.ingest import ingest, scan

    report = scan("raw.jsonl", policy=policy, audit=ws.audit)   # changes nothing
    result = ingest(ws, "raw.jsonl", name="support-v1", policy=policy)

Both stream the input (memory stays bounded by the screening state, about
2 KB per record, plus one record id per record) and run the stage in
passes over it: the screening checks first (:func:`sealtune.data.screen.screen`,
two or three parses of the input, records as parsed), then one pass that
detects PII, redacts by policy, minimises fields and seals each record
(skipping those screening drops) into the data or the quarantine file. The
sealed files are written through :class:`~sealtune.data.SealedWriter`:
the plaintext never reaches a file, temporary or not. Everything is built in
``datasets/.build-<name>-*`` and renamed into ``datasets/<name>`` only when
complete, so a failed ingest leaves no dataset behind. The input is hashed
before the first pass and its size, inode and modification time are checked
after the last, so a file changed midway is refused rather than half-described.

Record ids appear in reports and in the audit log, so an id that itself
contains PII is replaced by ``line-<n>``, and a repeated id gets ``~<k>``
appended (the sealed records carry the same ids); both are counted.

``shred_original`` overwrites the raw input once with random bytes (same
length, fsync) and unlinks it. That CANNOT guarantee erasure: copy-on-write
file systems (btrfs, ZFS, APFS) and log-structured ones write the new bytes
elsewhere and leave the old blocks until reused; SSDs and SD cards remap
writes (wear levelling) and keep over-provisioned and retired blocks the OS
cannot address; snapshots, backups, replicas, editor swap and backup files,
the page cache and copies made before ingest are untouched. The real control
is never to hold the plaintext unencrypted at rest: receive and keep raw data
sealed (``sealtune seal``) or on an encrypted volume, so that destroying a key
(crypto-shredding) erases every copy at once.

What this protects against: unredacted PII, secrets, unused fields and
poisoned records reaching the training set; plaintext left on disk by the
stage; undocumented provenance (the BOM and findings record what came in,
what policy applied and what went out). What it does not: PII the detectors
miss stays (redaction is as good as detection), screening finds the
published poisoning shapes, not every attack, and the stage trusts the
process and host it runs on.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sealtune
from sealtune.data import bom, store
from sealtune.data.findings import PiiStats
from sealtune.data.passes import (
    Progress,
    RecordPasses,
    changed,
    input_facts,
    policy_facts,
    screen_passes,
)
from sealtune.data.policy import Policy, default_policy
from sealtune.data.records import Record
from sealtune.data.redact import AuditSink, DatasetKeys, Redactor
from sealtune.data.screen import ScreenReport
from sealtune.data.sealed import SealedFile, SealedWriter, seal_bytes
from sealtune.errors import SealtuneError, UsageError
from sealtune.keys.versions import CommitGuard
from sealtune.outputs import fsync_dir, write_atomic

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["IngestResult", "Progress", "ScanReport", "ingest", "scan", "shred"]



@dataclass
class ScanReport:
    """What :func:`scan` found (no record text, no raw value).

    Attributes:
        path: the input.
        policy: policy source and digests.
        input: format, record, skipped-line and renamed-id counts.
        pii: entity counts and the action the policy would take, with masked examples.
        screening: the screening report.
    """

    path: str
    policy: dict[str, str]
    input: dict[str, Any]
    pii: PiiStats
    screening: ScreenReport

    def to_json(self) -> dict[str, Any]:
        return {"format": "sealtune.scan/v1", "path": self.path, "policy": self.policy,
                "input": self.input, "pii": self.pii.to_json(),
                "screening": self.screening.to_json()}


def _resolve(policy: Policy | None, on_error: str | None) -> tuple[Policy, str]:
    policy = policy if policy is not None else default_policy()
    return policy, on_error or policy.on_error


def scan(path: str | os.PathLike[str], *, policy: Policy | None = None,
         format: str | None = None, text_field: str | None = None, on_error: str | None = None,
         audit: AuditSink | None = None, progress: Progress | None = None) -> ScanReport:
    """Findings and statistics for ``path`` under ``policy``; writes nothing but an audit event.

    PII is counted over every record read (with throw-away dataset keys, so the
    counts are what :func:`ingest` would apply); screening sees the records as parsed.

    Args:
        path: the raw input.
        policy: the data policy (default: :func:`~sealtune.data.policy.default_policy`).
        format: the input format (detected if omitted).
        text_field: plain JSONL / CSV: the field holding the text.
        on_error: ``fail`` or ``skip`` for malformed lines (default: the policy's).
        audit: receives one ``data.scan`` event (e.g. ``workspace.audit``).
        progress: progress callback.

    Raises:
        DataFormatError: the input is unreadable or malformed (fail mode).
        ConfigError: the policy is invalid.
    """
    policy, on_error = _resolve(policy, on_error)
    analyzer = policy.analyzer()
    redactor = Redactor(policy, keys=DatasetKeys.generate())
    pii = PiiStats()
    source = RecordPasses(Path(path), format=format, text_field=text_field, on_error=on_error,
                     analyzer=analyzer, progress=progress)

    def count(record: Record) -> None:
        pii.redact(redactor, analyzer, record)

    source.on_first = count
    report = ScanReport(str(path), policy_facts(policy), {}, pii, screen_passes(source, policy))
    report.input = input_facts(source)
    if audit is not None:
        audit("data.scan", str(path), details={
            "records": source.stats.read, "skipped_lines": source.stats.skipped,
            "entities": sum(pii.entities.values()), "findings": len(report.screening.findings),
            "policy_digest": report.policy["digest"]})
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


@dataclass
class _Build:
    """One ingest in progress: what it reads, where it writes, what it counted."""

    ws: Workspace
    name: str
    policy: Policy
    source: RecordPasses
    dir: Path
    key_names: Sequence[str]
    input_sha: str
    input_size: int
    dataset_keys: DatasetKeys | None = None
    provenance: Mapping[str, Any] | None = None
    pii: PiiStats = field(default_factory=PiiStats)
    counts: Counter[str] = field(default_factory=Counter)
    quarantined: list[str] = field(default_factory=list)


def _write_records(b: _Build, decisions: Mapping[str, str],
                   keys: DatasetKeys) -> tuple[SealedFile, SealedFile]:
    analyzer = b.source.analyzer
    redactor = Redactor(b.policy, keys=keys)
    data = SealedWriter(b.dir / store.DATA_FILE, keys=b.ws.keys, key_names=b.key_names,
                        digest_plaintext=True)
    held = SealedWriter(b.dir / store.QUARANTINE_FILE, keys=b.ws.keys, key_names=b.key_names,
                        digest_plaintext=True)
    try:
        for record in b.source.records("redacting and sealing"):
            action = decisions.get(record.id)
            if action == "drop":
                b.counts["dropped_screening"] += 1
                continue
            outcome = b.pii.redact(redactor, analyzer, record)
            if outcome.record is None:
                b.counts["dropped_redaction"] += 1
                continue
            line = (json.dumps(outcome.record.to_json(), ensure_ascii=False) + "\n").encode()
            if action == "quarantine":
                held.write_line(line)
                b.quarantined.append(record.id)
                continue
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
    src = bom.DataFile("input", b.source.path.name, b.input_sha, b.input_size, stats.read,
                       {"format": stats.format, "skipped-lines": str(stats.skipped)})
    outs = [bom.DataFile(role, f.name, f.content_sha256, f.size, f.lines)
            for role, f in zip(("data", "quarantine"), outputs, strict=True)]
    facts = policy_facts(b.policy)
    props: dict[str, object] = {
        "policy:redaction-digest": facts["redaction_digest"],
        "policy:screening-digest": facts["screening_digest"],
        "policy:digest": facts["digest"], "policy:source": facts["source"],
        **{f"pii:{t}": n for t, n in sorted(b.pii.entities.items())},
        **{f"count:{k}": n for k, n in sorted(b.counts.items())}}
    return bom.build_bom(name=b.name, created=created, input_file=src, outputs=outs,
                         properties=props)


def _write_build(b: _Build, report: ScreenReport) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write every file of the dataset into the build directory; return manifest, findings."""
    dataset_keys = b.dataset_keys or DatasetKeys.generate()
    data, held = _write_records(b, report.decisions(), dataset_keys)
    secret = seal_bytes(b.dir / store.KEYS_FILE, dataset_keys.secret, keys=b.ws.keys,
                        key_names=b.key_names)
    created = datetime.now(UTC).replace(microsecond=0)
    stats = b.source.stats
    b.counts.update({"records_read": stats.read, "records_out": data.lines,
                     "quarantined": held.lines, "skipped_lines": stats.skipped,
                     "entities": sum(b.pii.entities.values())})
    findings = {"format": "sealtune.findings/v1", "dataset": b.name,
                "policy": policy_facts(b.policy), "input": input_facts(b.source),
                "counts": dict(b.counts),
                "pii": {"scope": "records kept (data and quarantine)", **b.pii.to_json()},
                "screening": report.to_json()}
    manifest = {
        "format": store.MANIFEST_FORMAT, "name": b.name,
        "created": created.isoformat().replace("+00:00", "Z"),
        "sealtune_version": sealtune.__version__,
        "input": {"name": b.source.path.name, "sha256": b.input_sha, "size": b.input_size,
                  "format": stats.format},
        "counts": dict(b.counts), "policy": policy_facts(b.policy),
        "keys": {"kek": list(data.keys), "dataset_secret": store.KEYS_FILE},
        "files": {"data": data.as_dict(), "quarantine": held.as_dict(),
                  "keys": secret.as_dict(), "findings": store.FINDINGS_FILE,
                  "bom": store.BOM_FILE}}
    if b.provenance is not None:
        manifest["pipeline"] = dict(b.provenance)
    store.write_json(b.dir / store.FINDINGS_FILE, findings)
    write_atomic(b.dir / store.BOM_FILE, _bom(b, created, (data, held)).encode("utf-8"))
    store.write_json(b.dir / store.MANIFEST_FILE, manifest)
    fsync_dir(b.dir)
    return manifest, findings


def _wrapped_entries(manifest: Mapping[str, Any]) -> list[str]:
    """``uri@version`` of every wrapped key of the dataset's sealed files."""
    return sorted({k for f in manifest["files"].values() if isinstance(f, dict)
                   for k in f.get("keys", ())})


def _run(ws: Workspace, src: Path, name: str, policy: Policy, source: RecordPasses,
         key_names: Sequence[str], extra: dict[str, Any]
         ) -> tuple[_Build, dict[str, Any], dict[str, Any]]:
    before = _identity(src)
    input_sha, input_size = store.sha256_file(src)
    report = screen_passes(source, policy)
    if not source.ids:
        raise SealtuneError(f"{src}: no records to ingest", hint="check the format and --on-error")
    root = store.datasets_dir(ws)
    build = root / f".build-{name}-{os.urandom(4).hex()}"
    build.mkdir(mode=0o700)
    try:
        b = _Build(ws, name, policy, source, build, key_names, input_sha, input_size, **extra)
        manifest, findings = _write_build(b, report)
        if _identity(src) != before:
            raise changed(src)
        # Published only while every KEK version it was sealed under is live (keys.versions).
        with CommitGuard(ws.keys, _wrapped_entries(manifest), what=f"dataset {name!r}") as guard:
            guard.check()
            os.rename(build, root / name)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    fsync_dir(root)
    return b, manifest, findings


def ingest(ws: Workspace, path: str | os.PathLike[str], *, name: str,
           policy: Policy | None = None, format: str | None = None,
           text_field: str | None = None, on_error: str | None = None,
           shred_original: bool = False, key_names: Sequence[str] | None = None,
           progress: Progress | None = None, dataset_keys: DatasetKeys | None = None,
           provenance: Mapping[str, Any] | None = None) -> IngestResult:
    """Turn a raw fine-tuning file into the sealed dataset ``datasets/<name>``.

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

    Raises:
        UsageError: a bad name, an existing dataset, an unusable input path.
        DataFormatError: a malformed input line (fail mode).
        ConfigError: the policy is invalid.
    """
    src = Path(path)
    _check_input(src, shred_original=shred_original)
    if (ws.root / store.DATASETS / store.check_name(name)).exists():
        raise UsageError(f"dataset {name!r} already exists", hint="choose another name")
    policy, on_error = _resolve(policy, on_error)
    keys = [ws.config.default_key] if key_names is None else list(key_names)
    source = RecordPasses(src, format=format, text_field=text_field, on_error=on_error,
                     analyzer=policy.analyzer(), progress=progress)
    try:
        b, manifest, findings = _run(ws, src, name, policy, source, keys, {
            "dataset_keys": dataset_keys, "provenance": provenance})
    except BaseException as exc:
        ws.audit("data.ingest", f"dataset/{name}", outcome="failure",
                 details={"error": type(exc).__name__})
        raise
    ws.audit("data.ingest", f"dataset/{name}", details={
        "input_sha256": b.input_sha,
        "output_content_sha256": manifest["files"]["data"]["content_sha256"],
        "counts": dict(b.counts), "policy_digest": manifest["policy"]["digest"]})
    for rid in b.quarantined:
        ws.audit("data.quarantine", f"dataset/{name}/{rid}")
    if shred_original:
        size = shred(src)
        ws.audit("data.shred", str(src), details={
            "bytes": size, "sha256": b.input_sha,
            "method": "one random overwrite, fsync, unlink",
            "limits": "no guarantee on copy-on-write file systems, SSDs, snapshots, backups"})
    return IngestResult(name, ws.root / store.DATASETS / name, manifest, findings,
                        tuple(b.quarantined), shred_original)


def shred(path: Path) -> int:
    """Overwrite ``path`` with random bytes (same length), fsync, unlink; return its size.

    Best effort only: see the module docstring for where this cannot erase.
    """
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        size = os.fstat(fd).st_size
        done = 0
        while done < size:
            done += os.pwrite(fd, os.urandom(min(1 << 20, size - done)), done)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    fsync_dir(path.parent)
    return size
