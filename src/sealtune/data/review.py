"""Review a dataset's quarantined and flagged records without unsealing them to a file.

The public surface::

    from sealtune.data.review import review_items, apply_review

    items = review_items(ws, "support-v1")        # masked, audited as data.review.show
    result = apply_review(ws, "support-v1", release=["c7"], drop=["c9"])

:func:`review_items` decrypts the dataset in memory (after checking every
sealed file against the manifest: a tampered file is an
:class:`~sealtune.errors.IntegrityError`) and returns the pending records,
each with its screening findings (check, reason, score, related ids: no
text) and its messages in *masked context*: a word is shown only if it
occurs in at least ``min_records`` distinct records of the dataset, holds
no digit and is not inside an entity the analyzer detects; every other word
is starred the way the findings' masked examples are
(:func:`sealtune.data.findings.mask`). A value unique to a few records (a
name, an account, a secret the detectors missed) therefore never reaches
the terminal; the shared words and template text that a reviewer judges a
record by do. CJK text is cut into two-character pieces for this count.

:func:`apply_review` releases (quarantine -> data; a flagged record is kept
and marked reviewed) or drops (removed from the dataset) records and
publishes the result as the dataset's next *revision*: data and quarantine
re-sealed under the KEKs of the current data file, findings, BOM and
manifest rewritten (``manifest["review"]``: revision, who, when, every
decision by record id, the previous manifest's digest), all built in a
locked ``.build-*`` directory and swapped with the published one in one
``renameat2(RENAME_EXCHANGE)`` (:meth:`sealtune.data.builds.Build.exchange`).
A crash at any point leaves either the old dataset or the new one, never a
mix. Training reads ``datasets/<name>`` as published, so the next job sees
the revision; the sealed files stay in the workspace, where key rotation's
inventory walk finds them. Each decision is audited (``data.review``:
record id, checks, decision, revision; never text) before the swap, and
the swap as ``data.review.commit`` with the new digests.

What this protects against: review by plaintext export (the quarantine
unsealed to a file, scrollback full of raw values), unaudited or anonymous
release decisions, a half-rewritten dataset after a crash, reviewing a
tampered quarantine. What it does not: the masked context still shows
shared words and the records' shape (word lengths); the actor is whoever
the workspace says (``$SEALTUNE_ACTOR`` or ``user@host``): there is no role
check beyond the workspace's own access control; the released record is
trusted as the reviewer judged it (no re-screening).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.data import store
from sealtune.data.findings import mask
from sealtune.data.review_build import Rebuild, write_revision
from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.sealing import open_sealed_lines

if TYPE_CHECKING:
    from sealtune.data.pii import Analyzer
    from sealtune.workspace import Workspace

__all__ = [
    "DECISIONS",
    "DEFAULT_MIN_RECORDS",
    "ReviewItem",
    "ReviewResult",
    "apply_review",
    "review_items",
]

#: A word is shown only if at least this many distinct records hold it.
DEFAULT_MIN_RECORDS = 3
DECISIONS = ("release", "drop")
_MAX_SHOWN = 600
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{1,2}|[^\W_]+")


@dataclass(frozen=True)
class ReviewItem:
    """One record awaiting review, masked.

    Attributes:
        record_id: the record's id (safe: ingest replaced ids holding PII).
        status: ``quarantined`` (sealed aside, not trained on) or ``flagged`` (in the data).
        findings: its screening findings (check, reason, score, related ids, action).
        messages: ``(role, masked text)`` per turn.
    """

    record_id: str
    status: str
    findings: tuple[Mapping[str, Any], ...]
    messages: tuple[tuple[str, str], ...]

    @property
    def checks(self) -> list[str]:
        """The checks that found it, sorted."""
        return sorted({str(f["check"]) for f in self.findings})

    def to_json(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "status": self.status, "checks": self.checks,
                "findings": [dict(f) for f in self.findings],
                "messages": [{"role": r, "text": t} for r, t in self.messages]}


@dataclass(frozen=True)
class ReviewResult:
    """What :func:`apply_review` published.

    Attributes:
        name: the dataset.
        revision: its new review revision (1 for the first review).
        released: ids released (into or kept in the data).
        dropped: ids removed from the dataset.
        manifest: the new ``dataset.json``.
    """

    name: str
    revision: int
    released: tuple[str, ...]
    dropped: tuple[str, ...]
    manifest: dict[str, Any]


def _findings_by_record(info: store.DatasetInfo) -> dict[str, list[dict[str, Any]]]:
    data = json.loads(info.file("findings").read_text("utf-8"))
    out: dict[str, list[dict[str, Any]]] = {}
    for f in data.get("screening", {}).get("findings", []):
        out.setdefault(str(f["record_id"]), []).append(dict(f))
    return out


def _decided(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return dict((manifest.get("review") or {}).get("decisions", {}))


def _verified(ws: Workspace, name: str) -> store.DatasetInfo:
    info = store.show_dataset(ws, name, verify=True)
    info.raise_if_broken()
    for role in ("data", "quarantine"):
        if "content_sha256" not in info.manifest["files"][role]:
            raise IntegrityError(f"dataset {name}: {role} has no content digest in the manifest",
                                 hint="re-ingest the dataset with this version of sealtune")
    return info


def _lines(ws: Workspace, path: Path) -> Iterator[tuple[str, bytes]]:
    """``(record id, line)`` of a sealed dataset file, decrypted in memory."""
    for line in open_sealed_lines(path, keys=ws.keys):
        if line.strip():
            yield str(json.loads(line)["id"]), line


def _words(text: str) -> set[str]:
    return {m.group().casefold() for m in _WORD.finditer(text)}


def _masked(text: str, common: Mapping[str, int], minimum: int, analyzer: Analyzer) -> str:
    spans = [(e.start, e.end) for e in analyzer.analyze(text)]
    out, pos = [], 0
    for m in _WORD.finditer(text[:_MAX_SHOWN]):
        word = m.group()
        shown = (common.get(word.casefold(), 0) >= minimum
                 and not any(ch.isdigit() for ch in word)
                 and not any(s < m.end() and m.start() < e for s, e in spans))
        out += [text[pos:m.start()], word if shown else mask(word, limit=_MAX_SHOWN)]
        pos = m.end()
    out.append(text[pos:_MAX_SHOWN])
    return "".join(out) + ("…" if len(text) > _MAX_SHOWN else "")


def review_items(ws: Workspace, name: str, *,
                 min_records: int = DEFAULT_MIN_RECORDS) -> list[ReviewItem]:
    """The dataset's pending quarantined and flagged records, masked; audited.

    Args:
        ws: the workspace.
        name: the dataset.
        min_records: show a word only if this many distinct records hold it (at least 2).

    Raises:
        UsageError: no such dataset; ``min_records`` below 2.
        IntegrityError: a sealed file does not match the manifest, or was modified.
    """
    if min_records < 2:
        raise UsageError(f"min_records={min_records}: a word held by one record is shown",
                         hint="use 2 or more (default 3)")
    info = _verified(ws, name)
    by_record, decided = _findings_by_record(info), _decided(info.manifest)
    flagged = {r for r, fs in by_record.items() if r not in decided
               and all(f["action"] == "flag" for f in fs)}
    common: Counter[str] = Counter()
    pending: list[tuple[str, str, bytes]] = []
    for part, status in (("quarantine", "quarantined"), ("data", "flagged")):
        for rid, line in _lines(ws, info.file(part)):
            obj = json.loads(line)
            common.update(_words(" ".join(str(m["content"]) for m in obj["messages"])))
            if part == "quarantine" or rid in flagged:
                pending.append((rid, status, line))
    ws.audit("data.review.show", f"dataset/{name}", details={
        "quarantined": sum(1 for _, s, _ in pending if s == "quarantined"),
        "flagged": sum(1 for _, s, _ in pending if s == "flagged"), "min_records": min_records})
    from sealtune.data.policy import default_policy

    analyzer = default_policy().analyzer()
    return [ReviewItem(rid, status, tuple(by_record.get(rid, ())), tuple(
        (str(m["role"]), _masked(str(m["content"]), common, min_records, analyzer))
        for m in json.loads(line)["messages"])) for rid, status, line in pending]


@contextmanager
def _review_lock(ws: Workspace, name: str) -> Iterator[None]:
    """One review of a dataset at a time (``datasets/.review-<name>.lock``, never removed)."""
    path = store.datasets_dir(ws) / f".review-{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_ids(info: store.DatasetInfo, ws: Workspace, release: Sequence[str],
               drop: Sequence[str]) -> dict[str, str]:
    both = sorted(set(release) & set(drop))
    if both:
        raise UsageError(f"record(s) {', '.join(both)} both released and dropped",
                         hint="give each record one decision")
    decisions = {**dict.fromkeys(release, "release"), **dict.fromkeys(drop, "drop")}
    if not decisions:
        raise UsageError("no decision given", hint="pass --release ID or --drop ID")
    by_record, decided = _findings_by_record(info), _decided(info.manifest)
    held = {rid for rid, _ in _lines(ws, info.file("quarantine"))}
    candidates = {r for r, fs in by_record.items() if r not in decided
                  and all(f["action"] == "flag" for f in fs)}
    flagged = {rid for rid, _ in _lines(ws, info.file("data")) if rid in candidates} \
        if any(r not in held for r in decisions) else set()
    unknown = sorted(r for r in decisions if r not in held and r not in flagged)
    if unknown:
        raise UsageError(f"dataset {info.name}: {', '.join(unknown[:10])} not awaiting review",
                         hint="list the pending records with 'sealtune data review NAME --list'")
    return decisions


def apply_review(ws: Workspace, name: str, *, release: Sequence[str] = (),
                 drop: Sequence[str] = ()) -> ReviewResult:
    """Release or drop records and publish the dataset's next revision atomically.

    Args:
        ws: the workspace (keys, ledger, actor).
        name: the dataset.
        release: ids to release (quarantined: into the data; flagged: kept, reviewed).
        drop: ids to remove from the dataset.

    Raises:
        UsageError: no such dataset, no decision, an id not awaiting review, an id
            both released and dropped.
        IntegrityError: a sealed file does not match the manifest, or was modified.
    """
    with _review_lock(ws, name):
        info = _verified(ws, name)
        decisions = _check_ids(info, ws, list(release), list(drop))
        by_record = _findings_by_record(info)
        revision = int((info.manifest.get("review") or {}).get("revision", 0)) + 1
        for rid, decision in sorted(decisions.items()):
            ws.audit("data.review", f"dataset/{name}/{rid}", details={
                "decision": decision, "revision": revision,
                "checks": sorted({str(f["check"]) for f in by_record.get(rid, ())})})
        previous = hashlib.sha256((info.path / store.MANIFEST_FILE).read_bytes()).hexdigest()
        rebuild = Rebuild(ws, info, decisions, by_record, revision=revision, actor=ws.actor,
                          at=datetime.now(UTC).replace(microsecond=0), previous=previous)
        try:
            manifest = write_revision(rebuild)
        except BaseException as exc:
            ws.audit("data.review.commit", f"dataset/{name}", outcome="failure",
                     details={"revision": revision, "error": type(exc).__name__})
            raise
    files = manifest["files"]
    ws.audit("data.review.commit", f"dataset/{name}", details={
        "revision": revision, "released": sum(d == "release" for d in decisions.values()),
        "dropped": sum(d == "drop" for d in decisions.values()),
        "data_content_sha256": files["data"]["content_sha256"],
        "quarantine_content_sha256": files["quarantine"]["content_sha256"]})
    return ReviewResult(name, revision,
                        tuple(sorted(r for r, d in decisions.items() if d == "release")),
                        tuple(sorted(r for r, d in decisions.items() if d == "drop")), manifest)
