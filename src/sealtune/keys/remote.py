"""Key rotation for the copies a workspace published to a remote blob store.

A remote blob store is write-once (``put_if_absent``; on S3 ``If-None-Match:
*`` and perhaps Object Lock), so a rotation cannot re-wrap a published file in
place the way it re-wraps local files. Instead each catalogued artifact whose
current generation is still wrapped under an old version of the key is
re-published as a new **generation**
(:func:`sealtune.storage.artifacts.republish_dir`): its blobs are fetched and
checked (:func:`~sealtune.storage.artifacts.fetch_dir`), re-wrapped in a
hidden scratch directory of the workspace, written as new objects, and the
catalogue record moves to them by compare-and-set; a ``storage.republish``
ledger event pins the new record's digest. :func:`remote_blockers` lists the
catalogued copies still wrapped under a version a retirement would remove,
and :func:`prune_superseded` deletes the superseded generations once the
old versions are retired.

Crash safety: a rotation killed midway leaves every record naming a complete
generation that opens under the old or the new version (blobs first, record
last); the blobs of a cut-off generation are never reused (the next attempt
takes a higher number) and are deleted by the next pruning.

What this protects against: a retirement that makes the published copies
unreadable without a word (it is refused, listing them), and a rotation that
leaves the catalogue naming blobs it did not check. What it does not: the
superseded generations a store refuses to delete (Object Lock retention)
stay in the bucket, wrapped under retired versions: after retirement (or
destroy) they no longer open, but their ciphertext is kept until the lock
expires; the per-file key versions in a record are unauthenticated hints
(opening a file authenticates its header); and two workspaces sharing one
catalogue are not coordinated beyond the compare-and-set (the loser's
rotation fails with ``ConflictError`` and is rerun).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sealtune.core.envelope import MAGIC, read_header
from sealtune.errors import IntegrityError, StorageError
from sealtune.keys.content import content_digest_of
from sealtune.keys.file_header import rewrap_file

if TYPE_CHECKING:
    from sealtune.storage import Record
    from sealtune.storage.content import ContentBlobs
    from sealtune.workspace import Workspace

__all__ = ["COLLECTIONS", "REGISTRY_AREA", "RemoteReport", "prune_superseded",
           "remote_blockers", "remote_impact", "rewrap_published", "wraps_of"]

#: The catalogued collections whose published copies a rotation re-wraps.
COLLECTIONS = ("datasets", "models")
#: Where the registry keeps its sealed version files (content digest, generations).
REGISTRY_AREA = "registry"
ArtifactHook = Callable[[str], None]


@dataclass
class RemoteReport:
    """What :func:`rewrap_published` did.

    Attributes:
        republished: ``collection/name@gN`` of each artifact moved to a new generation.
        current: artifacts already wrapped under the current version only.
    """

    republished: list[str] = field(default_factory=list)
    current: int = 0


def wraps_of(data: bytes) -> list[str]:
    """``kek_uri@version`` of every decodable slot of a sealed file (unauthenticated hints)."""
    if not data.startswith(MAGIC):
        return []
    try:
        header = read_header(io.BytesIO(data))
    except IntegrityError:
        return []
    return sorted({f"{e.kek_uri}@{e.version}" for _, slot in header.by_generation()
                   for e in slot.entries})


def _current_wraps(ws: Workspace, collection: str, record: Record) -> dict[str, list[str]]:
    """``file -> [kek_uri@version]`` of a record's generation: from the record, else the blobs."""
    from sealtune.storage.artifacts import current_files

    prefix, files = current_files(record, collection=collection)
    wraps = {}
    for rel, info in sorted(files.items()):
        listed = info.get("wraps")
        if not isinstance(listed, list):  # published before records noted it
            try:
                listed = wraps_of(ws.blobs.get(prefix + rel))
            except StorageError:
                listed = []
        wraps[rel] = [str(w) for w in listed]
    return wraps


def _old(wraps: dict[str, list[str]], uri: str, below: int) -> list[int]:
    versions = set()
    for entries in wraps.values():
        for entry in entries:
            kek, _, version = entry.rpartition("@")
            if kek == uri and version.isdigit() and int(version) < below:
                versions.add(int(version))
    return sorted(versions)


def _records(ws: Workspace) -> Iterator[tuple[str, Record]]:
    if ws.config.storage.is_default:
        return
    for collection in COLLECTIONS:
        for record in ws.meta.list(collection):
            yield collection, record


def _named(hexd: str) -> Callable[[bytes], bool]:
    """A check that a sealed blob's content digest is ``hexd`` (its name)."""
    return lambda data: content_digest_of(data) == hexd


def _sealed_blobs(ws: Workspace) -> Iterator[tuple[ContentBlobs, str, int, bytes]]:
    """The registry's sealed blobs in the remote store: ``(store, hex, generation, bytes)``.

    Each is the newest generation whose content digest matches its name (what
    a reader takes).
    """
    if ws.config.storage.is_default:
        return
    from sealtune.storage.content import ContentBlobs

    content = ContentBlobs(ws.blobs, area=REGISTRY_AREA)
    prefix = f"{REGISTRY_AREA}/content-sha256/"
    digests = sorted({key[len(prefix):].split("/", 1)[0] for key in ws.blobs.list(prefix)})
    for hexd in digests:
        number, data = content.read(hexd, check=_named(hexd))
        yield content, hexd, number, data


def _rewrap_sealed_blobs(ws: Workspace, key_name: str, uri: str, current: int) -> list[str]:
    """Add a re-wrapped generation for every registry blob still under an old version."""
    done = []
    for content, hexd, _number, data in _sealed_blobs(ws):
        if not _old({"": wraps_of(data)}, uri, current):
            continue
        scratch = Path(tempfile.mkdtemp(prefix=".rewrap-", dir=ws.root))
        try:
            path = scratch / "blob.sealed"
            path.write_bytes(data)
            rewrap_file(path, keys=ws.keys, key_name=key_name)
            number = content.add_generation(hexd, path.read_bytes())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        done.append(f"{REGISTRY_AREA}/content-sha256:{hexd[:12]}@g{number}")
    return done


def _rewrap_one(ws: Workspace, collection: str, record: Record, key_name: str) -> str:
    """Fetch, re-wrap and re-publish one artifact; returns ``collection/name@gN``."""
    from sealtune.storage import redact_url
    from sealtune.storage.artifacts import (
        current_generation,
        fetch_dir,
        record_digest,
        republish_dir,
    )

    scratch = Path(tempfile.mkdtemp(prefix=".rewrap-", dir=ws.root))
    try:
        fetch_dir(ws.blobs, ws.meta, collection=collection, name=record.key,
                  directory=scratch)
        for path in sorted(p for p in scratch.rglob("*") if p.is_file()):
            with path.open("rb") as fh:
                if fh.read(len(MAGIC)) == MAGIC:
                    rewrap_file(path, keys=ws.keys, key_name=key_name)
        moved = republish_dir(ws.blobs, ws.meta, collection=collection, name=record.key,
                              directory=scratch, record=record, describe=wraps_of)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    generation = current_generation(moved)
    ws.audit("storage.republish", f"{collection}/{record.key}", details={
        "record_sha256": record_digest(moved), "generation": generation,
        "store": redact_url(ws.blobs.url)})
    return f"{collection}/{record.key}@g{generation}"


def rewrap_published(ws: Workspace, key_name: str, *, current: int,
                     on_artifact: ArtifactHook | None = None) -> RemoteReport:
    """Re-publish every catalogued artifact still wrapped under a version below ``current``.

    Call under the key's version lock, after the rotation made ``current`` current.

    Raises:
        IntegrityError: a published copy does not match its record (nothing moved for it).
        ConflictError: its record moved meanwhile (rerun the rotation).
    """
    uri = ws.keys.info(key_name).uri
    report = RemoteReport()
    for collection, record in _records(ws):
        if not _old(_current_wraps(ws, collection, record), uri, current):
            report.current += 1
            continue
        report.republished.append(_rewrap_one(ws, collection, record, key_name))
        if on_artifact is not None:
            on_artifact(f"{collection}/{record.key}")
    report.republished += _rewrap_sealed_blobs(ws, key_name, uri, current)
    return report


def remote_blockers(ws: Workspace, uri: str, *, below: int) -> list[str]:
    """The catalogued remote copies whose current generation a version below ``below`` wraps."""
    from sealtune.storage import redact_url
    from sealtune.storage.artifacts import current_generation

    lines = []
    for collection, record in _records(ws):
        old = _old(_current_wraps(ws, collection, record), uri, below)
        if old:
            lines.append(f"{redact_url(ws.blobs.url)}: {collection}/{record.key} "
                         f"(generation {current_generation(record)}, wrapped under {uri} "
                         f"v{','.join(map(str, old))})")
    for _content, hexd, number, data in _sealed_blobs(ws):
        old = _old({"": wraps_of(data)}, uri, below)
        if old:
            lines.append(f"{redact_url(ws.blobs.url)}: {REGISTRY_AREA} blob content-sha256:"
                         f"{hexd} (generation {number}, wrapped under {uri} "
                         f"v{','.join(map(str, old))})")
    return lines


def prune_superseded(ws: Workspace) -> list[str]:
    """Delete every superseded generation; returns the keys the store keeps (Object Lock)."""
    from sealtune.storage.artifacts import prune_generations

    kept = []
    for collection, record in _records(ws):
        kept += prune_generations(ws.blobs, ws.meta, collection=collection, name=record.key)
    for content, hexd, number, _data in list(_sealed_blobs(ws)):
        kept += content.prune(hexd, keep=number)
    return kept


def remote_impact(ws: Workspace, uri: str, live: dict[str, set[int]]
                  ) -> tuple[list[str], list[tuple[str, tuple[str, ...]]]]:
    """What destroying KEK ``uri`` does to the catalogued remote copies (current generations).

    Returns:
        ``collection/name`` of the copies a file of which no other live KEK opens, and
        ``(collection/name, other live KEKs)`` of those every file of which another opens.
    """
    shredded, still_open = [], []
    for collection, record in _records(ws):
        wraps = _current_wraps(ws, collection, record)
        others_per_file = []
        for entries in wraps.values():
            keks = [e.rpartition("@") for e in entries]
            if any(kek == uri for kek, _, _ in keks):
                others_per_file.append({kek for kek, _, v in keks if kek != uri
                                        and v.isdigit() and int(v) in live.get(kek, set())})
        if not others_per_file:
            continue
        name = f"{collection}/{record.key}"
        if all(others_per_file):
            still_open.append((name, tuple(sorted(set.union(*others_per_file)))))
        else:
            shredded.append(name)
    return shredded, still_open
