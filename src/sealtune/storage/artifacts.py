"""Sealed artifact directories published to a BlobStore and catalogued in a MetaStore.

A stage builds an artifact (a sealed dataset, a model) in a local working
directory, because the sandbox binds local paths; :func:`publish_dir` then
writes each of its files to the blob store under ``<collection>/<name>/<file>``
(write-once) and records one catalogue record ``<collection>/<name>`` listing
every file's SHA-256 and size (also write-once: ``expect=0``).
:func:`verify_published` re-reads the blobs and checks them against that
record; :func:`fetch_dir` restores a checked copy.

What this protects against: a flipped byte, a removed object or an added
object under the artifact's prefix (named, exit 3); a second publication of
the same name overwriting the first (the catalogue refuses it); a publication
cut off midway (blobs are written first and the record last, so a retry finds
matching blobs and completes, and a reader never trusts blobs without the
record).

What it does not: the catalogue record itself is not signed here; whoever can
rewrite both the bucket and the database consistently is caught by the
sealing AEAD (the files are sealed) and by the ledger event that records the
record's digest (:func:`record_digest`), not by this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sealtune.errors import BlobExistsError, IntegrityError, StorageError
from sealtune.storage.base import BlobStore, MetaStore, Record, check_key, redact_url, sha256_hex

FORMAT = "sealtune.artifact/v1"


def _files(directory: Path) -> list[Path]:
    """Regular files under ``directory`` (not dot-files such as locks), sorted."""
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not any(part.startswith(".")
                                             for part in p.relative_to(directory).parts))


def publish_dir(blobs: BlobStore, meta: MetaStore, *, collection: str, name: str,
                directory: Path) -> Record:
    """Write every file of ``directory`` to ``blobs`` and catalogue them in ``meta``.

    Returns:
        The new catalogue record.

    Raises:
        IntegrityError: a blob of that name already holds different bytes.
        ConflictError: ``name`` is already catalogued.
    """
    files: dict[str, dict[str, Any]] = {}
    for path in _files(directory):
        rel = path.relative_to(directory).as_posix()
        key = check_key(f"{collection}/{name}/{rel}")
        data = path.read_bytes()
        digest = sha256_hex(data)
        try:
            blobs.put_if_absent(key, data)
        except BlobExistsError:
            # A retry after a crash finds its own blobs; anything else is not ours.
            if sha256_hex(blobs.get(key)) != digest:
                raise IntegrityError(f"{key} in {redact_url(blobs.url)} already holds "
                                     "other bytes", hint="keep the store as evidence") from None
        files[rel] = {"sha256": digest, "size": len(data)}
    doc = {"format": FORMAT, "files": files}
    return meta.put(collection, name, json.dumps(doc, sort_keys=True).encode(), expect=0)


def record_digest(record: Record) -> str:
    """SHA-256 of a catalogue record's bytes (what a ledger event pins)."""
    return sha256_hex(record.value)


def _manifest(meta: MetaStore, collection: str, name: str) -> dict[str, dict[str, Any]]:
    record = meta.get(collection, name)
    if record is None:
        raise IntegrityError(f"{collection}/{name} is not in the catalogue {redact_url(meta.url)}",
                             hint="it was never published, or its record was deleted")
    try:
        doc = json.loads(record.value)
        files = doc["files"]
        if doc.get("format") != FORMAT or not isinstance(files, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"the catalogue record {collection}/{name} is malformed",
                             hint="it was edited: keep the database as evidence") from None
    return files


def verify_published(blobs: BlobStore, meta: MetaStore, *, collection: str,
                     name: str) -> list[str]:
    """Check every blob of a published artifact; return the problems (empty if none).

    Each problem names the key: changed bytes, a missing object, or an object
    under the artifact's prefix that the record does not list.

    Raises:
        IntegrityError: the catalogue record is missing or malformed.
    """
    files = _manifest(meta, collection, name)
    prefix = f"{collection}/{name}/"
    problems = []
    for rel, info in sorted(files.items()):
        key = prefix + rel
        try:
            data = blobs.get(key)
        except StorageError:
            problems.append(f"{key}: missing")
            continue
        if sha256_hex(data) != info.get("sha256") or len(data) != info.get("size"):
            problems.append(f"{key}: does not match its recorded digest")
    for key in blobs.list(prefix):
        if key[len(prefix):] not in files:
            problems.append(f"{key}: not listed in the catalogue (added)")
    return problems


def fetch_dir(blobs: BlobStore, meta: MetaStore, *, collection: str, name: str,
              directory: Path) -> None:
    """Write a checked copy of a published artifact into ``directory`` (created ``0700``).

    Every blob is read once and checked in memory before anything is written,
    so a blob swapped between a check and a read cannot slip through.

    Raises:
        IntegrityError: any problem :func:`verify_published` would report (nothing written).
    """
    problems = verify_published(blobs, meta, collection=collection, name=name)
    files = _manifest(meta, collection, name)
    data: dict[str, bytes] = {}
    for rel, info in sorted(files.items()):
        if not problems:
            data[rel] = blobs.get(f"{collection}/{name}/{rel}")
            if sha256_hex(data[rel]) != info.get("sha256"):
                problems.append(f"{collection}/{name}/{rel}: changed while being read")
    if problems:
        raise IntegrityError(f"{collection}/{name}: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                             hint="restore the store from a backup; keep it as evidence")
    for rel, blob in data.items():
        target = directory / rel
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.write_bytes(blob)
        target.chmod(0o600)
