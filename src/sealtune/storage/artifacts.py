"""Sealed artifact directories published to a BlobStore and catalogued in a MetaStore.

A stage builds an artifact (a sealed dataset, a model) in a local working
directory, because the sandbox binds local paths; :func:`publish_dir` then
writes each of its files to the blob store under ``<collection>/<name>/<file>``
(write-once) and records one catalogue record ``<collection>/<name>`` listing
every file's SHA-256 and size (also write-once: ``expect=0``).
:func:`verify_published` re-reads the blobs and checks them against that
record; :func:`fetch_dir` restores a checked copy.

Generations: a key rotation cannot re-wrap a write-once blob in place, so
:func:`republish_dir` writes the re-wrapped files as a new generation
(``<collection>/<name>@gN/<file>``; generation 1 is the original prefix) and
moves the record there by compare-and-set; the record names its generation.
:func:`prune_generations` deletes the generations no record names
(superseded ones, and orphans of a cut-off attempt), keeping what Object
Lock refuses to delete.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sealtune.errors import BlobExistsError, IntegrityError, PolicyViolation, StorageError
from sealtune.storage.base import BlobStore, MetaStore, Record, check_key, redact_url, sha256_hex

FORMAT = "sealtune.artifact/v1"


def _files(directory: Path) -> list[Path]:
    """Regular files under ``directory`` (not dot-files such as locks), sorted."""
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not any(part.startswith(".")
                                             for part in p.relative_to(directory).parts))


def _prefix(collection: str, name: str, generation: int) -> str:
    """Where a generation's blobs live: the first under ``<collection>/<name>/``."""
    return f"{collection}/{name}/" if generation == 1 else f"{collection}/{name}@g{generation}/"


#: What a publisher notes about each file's bytes (the key versions wrapping a sealed file).
Describe = Callable[[bytes], list[str]]


def _put_blobs(blobs: BlobStore, prefix: str, directory: Path,
               describe: Describe | None) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for path in _files(directory):
        rel = path.relative_to(directory).as_posix()
        key = check_key(prefix + rel)
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
        if describe is not None:
            files[rel]["wraps"] = describe(data)
    return files


def _doc(files: dict[str, dict[str, Any]], generation: int) -> bytes:
    doc = {"format": FORMAT, "generation": generation, "files": files}
    return json.dumps(doc, sort_keys=True).encode()


def publish_dir(blobs: BlobStore, meta: MetaStore, *, collection: str, name: str,
                directory: Path, describe: Describe | None = None) -> Record:
    """Write every file of ``directory`` to ``blobs`` and catalogue them in ``meta``.

    ``describe(data)`` (if given) is stored as each file's ``wraps`` in the
    record: the key versions wrapping it, so a retirement can be checked
    without reading every blob.

    Returns:
        The new catalogue record (generation 1).

    Raises:
        IntegrityError: a blob of that name already holds different bytes.
        ConflictError: ``name`` is already catalogued.
    """
    files = _put_blobs(blobs, _prefix(collection, name, 1), directory, describe)
    return meta.put(collection, name, _doc(files, 1), expect=0)


def generations(blobs: BlobStore, *, collection: str, name: str) -> list[int]:
    """Every generation with at least one blob in the store (current, superseded, orphaned)."""
    found = {1} if next(iter(blobs.list(_prefix(collection, name, 1))), None) else set()
    marker = f"{collection}/{name}@g"
    for key in blobs.list(marker):
        number = key[len(marker):].split("/", 1)[0]
        if number.isdigit() and number[0] != "0":
            found.add(int(number))
    return sorted(found)


def republish_dir(blobs: BlobStore, meta: MetaStore, *, collection: str, name: str,
                  directory: Path, record: Record, describe: Describe | None = None) -> Record:
    """Publish ``directory`` as a new generation of ``name`` and move its record there.

    The generation is one above every generation with blobs in the store, so a
    cut-off earlier attempt (blobs without a record) is never written over: it
    is left for :func:`prune_generations`. The record moves by compare-and-set
    on ``record.version``; the blobs of the generation it names stay untouched.

    Raises:
        ConflictError: the record changed since ``record`` was read (another rotation).
        IntegrityError: the record is malformed.
    """
    current = current_generation(record)
    generation = max([current, *generations(blobs, collection=collection, name=name)]) + 1
    files = _put_blobs(blobs, _prefix(collection, name, generation), directory, describe)
    return meta.put(collection, name, _doc(files, generation), expect=record.version)


def prune_generations(blobs: BlobStore, meta: MetaStore, *, collection: str,
                      name: str) -> list[str]:
    """Delete the blobs of every generation the record no longer names.

    Returns:
        The keys the store refused to delete (Object Lock retention): they stay.
    """
    record = meta.get(collection, name)
    if record is None:
        return []
    current = current_generation(record)
    kept = []
    for generation in generations(blobs, collection=collection, name=name):
        if generation == current:
            continue
        for key in list(blobs.list(_prefix(collection, name, generation))):
            try:
                blobs.delete(key)
            except PolicyViolation:
                kept.append(key)
    return kept


def current_generation(record: Record) -> int:
    """The generation a catalogue record names (1 for records from before generations)."""
    generation = _parse(record).get("generation", 1)
    if not isinstance(generation, int) or generation < 1:
        raise IntegrityError(f"the catalogue record {record.key} has an invalid generation",
                             hint="it was edited: keep the database as evidence")
    return generation


def current_files(record: Record, *, collection: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """The key prefix of the generation a record names, and its files' entries."""
    return _prefix(collection, record.key, current_generation(record)), _manifest_of(record)


def record_digest(record: Record) -> str:
    """SHA-256 of a catalogue record's bytes (what a ledger event pins)."""
    return sha256_hex(record.value)


def _parse(record: Record) -> dict[str, Any]:
    try:
        doc = json.loads(record.value)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(
                doc.get("files"), dict):
            raise ValueError
    except ValueError:
        raise IntegrityError(f"the catalogue record {record.key} is malformed",
                             hint="it was edited: keep the database as evidence") from None
    return doc


def _manifest_of(record: Record) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = _parse(record)["files"]
    return files


def _manifest(meta: MetaStore, collection: str, name: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """The key prefix of the current generation and its files."""
    record = meta.get(collection, name)
    if record is None:
        raise IntegrityError(f"{collection}/{name} is not in the catalogue {redact_url(meta.url)}",
                             hint="it was never published, or its record was deleted")
    return _prefix(collection, name, current_generation(record)), _manifest_of(record)


def verify_published(blobs: BlobStore, meta: MetaStore, *, collection: str,
                     name: str) -> list[str]:
    """Check every blob of a published artifact; return the problems (empty if none).

    Each problem names the key: changed bytes, a missing object, or an object
    under the artifact's prefix that the record does not list.

    Raises:
        IntegrityError: the catalogue record is missing or malformed.
    """
    prefix, files = _manifest(meta, collection, name)
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
    prefix, files = _manifest(meta, collection, name)
    data: dict[str, bytes] = {}
    for rel, info in sorted(files.items()):
        if not problems:
            data[rel] = blobs.get(prefix + rel)
            if sha256_hex(data[rel]) != info.get("sha256"):
                problems.append(f"{prefix}{rel}: changed while being read")
    if problems:
        raise IntegrityError(f"{collection}/{name}: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                             hint="restore the store from a backup; keep it as evidence")
    for rel, blob in data.items():
        target = directory / rel
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.write_bytes(blob)
        target.chmod(0o600)
