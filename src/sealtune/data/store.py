"""The dataset catalogue: where datasets live, what they hold, reading them back.

A dataset lives in ``<workspace>/datasets/<name>/``::

    data.jsonl.sealed        the cleaned records (JSONL of Record.to_json()), sealed
    quarantine.jsonl.sealed  records quarantined by screening, sealed aside for review
    dataset-keys.sealed      the dataset secret (pseudonym and token keys), sealed
    findings.json            counts and findings: record ids and masked examples, no text
    bom.cdx.json             the CycloneDX 1.6 ML-BOM (provenance)
    dataset.json             the manifest: counts, digests, file names, key names

:func:`sealtune.data.ingest.ingest` builds it in a hidden ``.build-*``
directory and renames it into place when complete; the catalogue lists only
complete datasets (a directory with a manifest).

What this protects against: a dataset read without a trace
(:func:`read_dataset` and :func:`open_dataset_keys` write audit events) and
a stored file swapped or damaged unnoticed (:func:`show_dataset` checks every
sealed file's content digest against the manifest, and the sealed format
authenticates every byte on reading). The content digest
(:mod:`sealtune.keys.content`) covers the sealed file's prefix and payload
but not its header slots, so re-wrapping the files under a rotated key leaves
the manifest true. What it does not: the manifest, the
findings and the BOM are plain JSON, unsigned here: whoever can write the
workspace can rewrite them consistently (the registry signs what links to
them).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.data.records import Record
from sealtune.data.redact import DatasetKeys
from sealtune.errors import IntegrityError, SealtuneError, UsageError, WorkspaceError
from sealtune.keys.content import content_digest
from sealtune.keys.file_header import describe_file
from sealtune.keys.sealing import open_sealed, open_sealed_lines
from sealtune.outputs import open_text_output

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = [
    "BOM_FILE", "DATA_FILE", "FINDINGS_FILE", "KEYS_FILE", "MANIFEST_FILE", "QUARANTINE_FILE",
    "DatasetInfo", "check_name", "datasets_dir", "export_bom", "list_datasets",
    "open_dataset_keys", "read_dataset", "show_dataset",
]

DATASETS = "datasets"
DATA_FILE = "data.jsonl.sealed"
QUARANTINE_FILE = "quarantine.jsonl.sealed"
KEYS_FILE = "dataset-keys.sealed"
FINDINGS_FILE = "findings.json"
BOM_FILE = "bom.cdx.json"
MANIFEST_FILE = "dataset.json"
MANIFEST_FORMAT = "sealtune.dataset/v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """A dataset name: 1-64 letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit.

    Raises:
        UsageError: the name is not allowed.
    """
    if not _NAME.match(name):
        raise UsageError(f"dataset name {name!r} is not allowed",
                         hint="use 1-64 letters, digits, '.', '_' or '-', starting with a "
                              "letter or digit")
    return name


def datasets_dir(ws: Workspace) -> Path:
    """``<workspace>/datasets`` (created 0700 on first use)."""
    return ws.area(DATASETS, create=True)


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset in the catalogue.

    Attributes:
        name: the dataset name.
        path: its directory.
        manifest: the parsed ``dataset.json``.
        intact: sealed file name -> whether its content digest matches the
            manifest (empty when not checked).
    """

    name: str
    path: Path
    manifest: dict[str, Any]
    intact: dict[str, bool]

    @property
    def created(self) -> str:
        """When it was ingested (ISO 8601, UTC)."""
        return str(self.manifest.get("created", ""))

    @property
    def counts(self) -> dict[str, int]:
        """The manifest's counts (records read, out, quarantined, dropped, entities, ...)."""
        return dict(self.manifest.get("counts", {}))

    def file(self, role: str) -> Path:
        """The path of the file with ``role``: data, quarantine, keys, findings, bom."""
        entry = self.manifest["files"][role]
        return self.path / str(entry["name"] if isinstance(entry, dict) else entry)

    def keks(self) -> tuple[list[str], bool]:
        """The KEKs that open the data file, and whether they were read from it now.

        A rotation changes them, so they come from the sealed header
        (``uri@version``); if it cannot be read, the manifest's names at ingest
        are returned with ``False``.
        """
        try:
            entries = describe_file(self.file("data")).entries
        except SealtuneError:
            return [str(k) for k in self.manifest["keys"]["kek"]], False
        return [f"{e.kek_uri}@{e.version}" for e in entries], True

    def raise_if_broken(self) -> None:
        """Raise unless every checked sealed file matched the manifest.

        Raises:
            IntegrityError: naming the files that do not match.
        """
        broken = sorted(f for f, ok in self.intact.items() if not ok)
        if broken:
            raise IntegrityError(f"dataset {self.name}: {', '.join(broken)} do not match the "
                                 "manifest", hint="restore the dataset from a trusted copy")


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex SHA-256 and size of a file, read in 1 MiB blocks."""
    h, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def write_json(path: Path, data: object) -> None:
    """Create ``path`` (must not exist) with ``data`` as indented JSON, atomically."""
    with open_text_output(path, atomic="require", overwrite=False) as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


def _load(path: Path, *, verify: bool) -> DatasetInfo:
    manifest_path = path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except FileNotFoundError:
        raise WorkspaceError(f"{path}: no {MANIFEST_FILE}: not a complete dataset") from None
    except (OSError, ValueError):
        raise IntegrityError(f"{manifest_path}: unreadable or not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise IntegrityError(f"{manifest_path}: not a {MANIFEST_FORMAT} manifest")
    intact: dict[str, bool] = {}
    if verify:
        for entry in manifest.get("files", {}).values():
            if isinstance(entry, dict) and ("content_sha256" in entry or "sha256" in entry):
                file = path / str(entry["name"])
                intact[str(entry["name"])] = file.is_file() and _matches(file, entry)
    return DatasetInfo(path.name, path, manifest, intact)


def _matches(file: Path, entry: dict[str, Any]) -> bool:
    """Whether a sealed file matches its manifest entry.

    ``content_sha256`` (what ingest writes) is the content digest, which key
    rotation does not change. A manifest written before it carries ``sha256``,
    the digest of the whole file, which any re-wrap changes: it is still
    checked as it was (such a dataset fails after a rotation: re-ingest it).
    """
    if "content_sha256" in entry:
        try:
            return content_digest(file) == str(entry["content_sha256"])
        except IntegrityError:
            return False
    return sha256_file(file)[0] == str(entry["sha256"])


def list_datasets(ws: Workspace) -> list[DatasetInfo]:
    """Every complete dataset in the workspace, by name (build directories are skipped)."""
    root = ws.area(DATASETS)
    if not root.is_dir():
        return []
    return [_load(p, verify=False) for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()]


def show_dataset(ws: Workspace, name: str, *, verify: bool = True) -> DatasetInfo:
    """One dataset; with ``verify`` each sealed file's content digest is checked.

    Raises:
        UsageError: no dataset of that name.
        IntegrityError: the manifest is unreadable.
    """
    path = ws.area(DATASETS) / check_name(name)
    if not (path / MANIFEST_FILE).is_file():
        raise UsageError(f"no dataset named {name!r}", hint="list them with 'sealtune data list'")
    return _load(path, verify=verify)


def read_dataset(ws: Workspace, name: str, *, part: str = "data") -> Iterator[Record]:
    """The records of a dataset, decrypted in memory only; audited as ``data.read``.

    The dataset is looked up and the event written when this is called; the
    records are decrypted as they are iterated.

    Args:
        ws: the workspace.
        name: the dataset.
        part: ``data`` (what training uses) or ``quarantine`` (for review).

    Raises:
        UsageError: no such dataset or part.
        IntegrityError: (while iterating) the sealed file was modified; records
            already handed out came from authenticated segments.
    """
    if part not in ("data", "quarantine"):
        raise UsageError(f"part {part!r}: use data or quarantine")
    path = show_dataset(ws, name, verify=False).file(part)
    ws.audit("data.read", f"dataset/{name}", details={"part": part})
    return _records(path, ws)


def _records(path: Path, ws: Workspace) -> Iterator[Record]:
    for number, line in enumerate(open_sealed_lines(path, keys=ws.keys), start=1):
        if line.strip():
            yield Record.from_json(json.loads(line), line=number)


def open_dataset_keys(ws: Workspace, name: str) -> DatasetKeys:
    """Unwrap the dataset secret (for :func:`sealtune.data.redact.detokenize`); audited.

    Raises:
        UsageError: no such dataset.
        IntegrityError: the sealed secret was modified.
    """
    info = show_dataset(ws, name, verify=False)
    secret = b"".join(open_sealed(info.file("keys"), keys=ws.keys))
    ws.audit("data.keys.open", f"dataset/{name}")
    return DatasetKeys(secret)


def export_bom(ws: Workspace, name: str) -> str:
    """The dataset's CycloneDX 1.6 BOM (JSON text) as stored."""
    return show_dataset(ws, name, verify=False).file("bom").read_text("utf-8")
