"""Write a reviewed dataset's next revision into a build directory and swap it in.

Used by :func:`sealtune.data.review.apply_review`. The data and quarantine
files are re-sealed (decrypted line by line in memory, never to a file)
under fresh data keys wrapped by the KEKs that wrap the current data file;
the dataset secret is copied as it is (still sealed); findings, BOM and
manifest are rewritten with the new counts and digests and the review
record. Everything goes into a locked ``.build-*`` directory
(:mod:`sealtune.data.builds`) that replaces ``datasets/<name>`` in one
atomic exchange, under the KEK version check every publication passes
(:class:`~sealtune.keys.versions.CommitGuard`).

What this protects against: a crash or kill leaving a dataset half old and
half new, plaintext on disk, a manifest whose digests do not match its
files. What it does not: concurrent reviews are serialised by the caller's
lock, not here; the manifest, findings and BOM stay unsigned JSON (as
ingest writes them: see :mod:`sealtune.data.store`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from sealtune.data import bom, store
from sealtune.data.builds import remove_stale_builds, start_build
from sealtune.errors import IntegrityError
from sealtune.keys.sealing import SealedFile, SealedWriter, open_sealed_lines
from sealtune.keys.versions import CommitGuard
from sealtune.outputs import fsync_dir, write_atomic

if TYPE_CHECKING:
    from pathlib import Path

    from sealtune.workspace import Workspace

__all__ = ["Rebuild", "write_revision"]


@dataclass(frozen=True)
class Rebuild:
    """One review being published.

    Attributes:
        ws: the workspace.
        info: the dataset as verified before the review.
        decisions: record id -> ``release`` or ``drop``.
        findings: record id -> its screening findings.
        revision: the new revision number.
        actor: who decided.
        at: when (UTC, whole seconds).
        previous: hex SHA-256 of the manifest being replaced.
    """

    ws: Workspace
    info: store.DatasetInfo
    decisions: Mapping[str, str]
    findings: Mapping[str, list[dict[str, Any]]]
    revision: int
    actor: str
    at: datetime
    previous: str


def _key_names(r: Rebuild) -> list[str]:
    """KEK names for the new files: those wrapping the current data file (after rotations)."""
    keks, from_header = r.info.keks()
    by_uri = {k.uri: k.name for k in r.ws.keys.list()}
    names = [by_uri.get(entry.rsplit("@", 1)[0]) for entry in keks]
    if not from_header or None in names:
        raise IntegrityError(f"dataset {r.info.name}: the KEKs of its data file are not all "
                             "in this workspace", hint="review it in the workspace that holds "
                                                       "its keys")
    return [n for n in names if n is not None]


def _reseal(r: Rebuild, build: Path, names: list[str]) -> tuple[SealedFile, SealedFile]:
    data = SealedWriter(build / store.DATA_FILE, keys=r.ws.keys, key_names=names,
                        digest_plaintext=True)
    held = SealedWriter(build / store.QUARANTINE_FILE, keys=r.ws.keys, key_names=names,
                        digest_plaintext=True)
    try:
        for part in ("data", "quarantine"):
            for line in open_sealed_lines(r.info.file(part), keys=r.ws.keys):
                if not line.strip():
                    continue
                decision = r.decisions.get(str(json.loads(line)["id"]))
                if decision == "drop":
                    continue
                out = held if part == "quarantine" and decision != "release" else data
                out.write_line(line + b"\n")
        return data.close(), held.close()
    except BaseException:
        data.abort()
        held.abort()
        raise


def _counts(r: Rebuild, data: SealedFile, held: SealedFile) -> dict[str, Any]:
    counts = dict(r.info.counts)
    released = sum(d == "release" for d in r.decisions.values())
    dropped = sum(d == "drop" for d in r.decisions.values())
    counts.update({"records_out": data.lines, "quarantined": held.lines,
                   "released_review": counts.get("released_review", 0) + released,
                   "dropped_review": counts.get("dropped_review", 0) + dropped})
    return counts


def _review_block(r: Rebuild) -> dict[str, Any]:
    when = r.at.isoformat().replace("+00:00", "Z")
    decided = dict((r.info.manifest.get("review") or {}).get("decisions", {}))
    for rid, decision in sorted(r.decisions.items()):
        decided[rid] = {"decision": decision, "revision": r.revision, "by": r.actor,
                        "checks": sorted({str(f["check"]) for f in r.findings.get(rid, ())})}
    return {"revision": r.revision, "updated": when, "by": r.actor, "decisions": decided,
            "previous_manifest_sha256": r.previous}


def _bom(r: Rebuild, manifest: Mapping[str, Any], findings: Mapping[str, Any],
         outputs: tuple[SealedFile, SealedFile]) -> str:
    m, counts = manifest, manifest["counts"]
    src = bom.DataFile("input", m["input"]["name"], m["input"]["sha256"], m["input"]["size"],
                       counts.get("records_read", 0),
                       {"format": m["input"]["format"],
                        "skipped-lines": str(counts.get("skipped_lines", 0))})
    outs = [bom.DataFile(role, f.name, f.content_sha256, f.size, f.lines)
            for role, f in zip(("data", "quarantine"), outputs, strict=True)]
    facts = m["policy"]
    props: dict[str, object] = {
        "policy:redaction-digest": facts["redaction_digest"],
        "policy:screening-digest": facts["screening_digest"],
        "policy:digest": facts["digest"], "policy:source": PurePath(facts["source"]).name,
        **{f"pii:{t}": n for t, n in sorted(findings["pii"].get("entities", {}).items())},
        **{f"count:{k}": n for k, n in sorted(counts.items())},
        "review:revision": r.revision, "review:by": r.actor}
    return bom.build_bom(name=r.info.name, created=r.at, input_file=src, outputs=outs,
                         properties=props)


def _write(r: Rebuild, build: Path) -> dict[str, Any]:
    data, held = _reseal(r, build, _key_names(r))
    shutil.copyfile(r.info.file("keys"), build / store.KEYS_FILE)  # sealed: copied as is
    counts = _counts(r, data, held)
    review = _review_block(r)
    findings = json.loads(r.info.file("findings").read_text("utf-8"))
    findings.update({"counts": counts, "review": {
        "revision": r.revision, "decisions": [
            {"record_id": rid, **d} for rid, d in sorted(review["decisions"].items())]}})
    manifest = dict(r.info.manifest)
    files = dict(manifest["files"])
    files.update({"data": data.as_dict(), "quarantine": held.as_dict()})
    manifest.update({"counts": counts, "files": files, "review": review,
                     "keys": {**manifest["keys"], "kek": list(data.keys)}})
    store.write_json(build / store.FINDINGS_FILE, findings)
    write_atomic(build / store.BOM_FILE, _bom(r, manifest, findings, (data, held)).encode())
    store.write_json(build / store.MANIFEST_FILE, manifest)
    fsync_dir(build)
    return manifest


def write_revision(r: Rebuild) -> dict[str, Any]:
    """Build the next revision of ``r.info`` and swap it in; return its manifest.

    Raises:
        IntegrityError: a sealed file was modified while it was read, or its KEKs
            are not in this workspace.
        SealtuneError: the file system cannot swap directories atomically.
    """
    root = store.datasets_dir(r.ws)
    removed = remove_stale_builds(root)
    if removed:
        r.ws.audit("data.cleanup", store.DATASETS, details={"stale_builds_removed": removed})
    build = start_build(root, r.info.name)
    try:
        manifest = _write(r, build.path)
        wrapped = sorted({k for f in manifest["files"].values() if isinstance(f, dict)
                          for k in f.get("keys", ())})
        with CommitGuard(r.ws.keys, wrapped, what=f"dataset {r.info.name!r}") as guard:
            guard.check()
            build.exchange(r.info.path)
    except BaseException:
        build.abandon()
        raise
    return manifest
