"""The inventory of sealed files a workspace knows, and the KEK versions that wrap them.

Derived, not stored, for the workspace itself: every call walks the
workspace directory (datasets, dataset key files, models, job checkpoints,
whatever a later stage adds) and reads the header of each file that starts
with the sealed-file magic. A walk cannot go stale: a file moved, deleted or
written by a stage that forgot to register it is still seen exactly as it is
on disk, and the walk reads only headers (a few KiB per file).

Files sealed *outside* the workspace (``sealtune seal IN OUT``, the files of
``--rewrap DIR``) cannot be found by a walk, so their absolute paths are
appended to ``<workspace>/sealed-elsewhere.jsonl`` when they are written; the
list is only a hint (each path is re-read and skipped when it no longer
holds a sealed file) and :func:`compact` drops dead entries.

A walk never follows symbolic links (a link inside a directory is skipped,
so ``--rewrap DIR`` cannot reach outside ``DIR`` through one) and skips
hidden entries (``.build-*`` directories of stages still writing, ``.part``
temp files): those are published under the version lock and checked then
(:mod:`sealtune.keys.versions`).

What this protects against: a rotation or retirement that forgets the
workspace's own files, and a key destroyed without showing which files it
leaves readable through another key. What it does not: know about copies it
was never shown (backups, files sealed by another workspace, a file moved
after it was sealed outside the workspace); the header facts it lists are
read without any key, so they are NOT authenticated (opening or re-wrapping
a file authenticates it).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sealtune.core.envelope import MAGIC, read_header
from sealtune.errors import IntegrityError
from sealtune.keys.file_results import KeyEntry
from sealtune.outputs import write_atomic

__all__ = ["ELSEWHERE", "KnownFile", "compact", "known_files", "remember", "walk_sealed"]

ELSEWHERE = "sealed-elsewhere.jsonl"


@dataclass(frozen=True)
class KnownFile:
    """A sealed file and the KEK versions its header names (unauthenticated).

    Attributes:
        path: the file (absolute).
        file_id: hex file id.
        entries: the entries of the newest decodable slot.
        stale: entries of an older slot still present (an interrupted re-wrap).
        origin: ``workspace``, ``elsewhere`` (sealed outside it) or ``given``.
    """

    path: Path
    file_id: str
    entries: tuple[KeyEntry, ...]
    stale: tuple[KeyEntry, ...]
    origin: str

    def versions_of(self, uri: str) -> set[int]:
        """Versions of ``uri`` in any decodable slot (newest and stale)."""
        return {e.version for e in (*self.entries, *self.stale) if e.kek_uri == uri}


def _is_sealed(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _read(path: Path, origin: str) -> KnownFile | None:
    """The header facts of ``path``, or None when it is not (or no longer) a sealed file."""
    try:
        with path.open("rb") as fh:
            header = read_header(fh)
    except (OSError, IntegrityError):
        return None
    slots = [s for _, s in header.by_generation()]
    entries = tuple(KeyEntry(e.kek_uri, e.version) for e in slots[0].entries) if slots else ()
    stale = tuple(KeyEntry(e.kek_uri, e.version) for s in slots[1:] for e in s.entries)
    return KnownFile(path, header.prefix.file_id.hex(), entries, stale, origin)


def walk_sealed(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` that start with the sealed magic.

    Symbolic links (to files or directories) are never followed, and hidden
    entries are skipped.
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath, name)
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and _is_sealed(path):
                yield path


def _elsewhere(root: Path) -> list[Path]:
    """The paths recorded in ``sealed-elsewhere.jsonl`` (deduplicated, in order)."""
    path = root / ELSEWHERE
    seen: dict[Path, None] = {}
    try:
        with path.open("r", encoding="utf-8") as fh:
            for line in fh:
                try:
                    seen[Path(str(json.loads(line)["path"]))] = None
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash: skip it
    except FileNotFoundError:
        return []
    return list(seen)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def remember(root: Path, paths: Iterable[Path]) -> None:
    """Record sealed files written outside the workspace ``root`` (others are skipped)."""
    lines = []
    for path in paths:
        full = Path(os.path.abspath(path))
        if not _inside(full, root.absolute()):
            lines.append(json.dumps({"path": str(full)}, ensure_ascii=False) + "\n")
    if not lines:
        return
    fd = os.open(root / ELSEWHERE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, "".join(lines).encode("utf-8"))
    finally:
        os.close(fd)


def compact(root: Path) -> None:
    """Rewrite ``sealed-elsewhere.jsonl`` without the paths that hold no sealed file now."""
    paths = [p for p in _elsewhere(root) if not p.is_symlink() and _is_sealed(p)]
    target = root / ELSEWHERE
    if not target.exists():
        return
    write_atomic(target, "".join(json.dumps({"path": str(path)}, ensure_ascii=False) + "\n"
                                 for path in paths).encode("utf-8"))


def known_files(root: Path, *, given: Sequence[Path] = ()) -> list[KnownFile]:
    """Every sealed file the workspace knows, plus those under the ``given`` directories.

    Args:
        root: the workspace directory.
        given: directories to walk as well (``--rewrap DIR``); links inside are not followed.

    Returns:
        One entry per file (a file reached twice is listed once), workspace files first.
    """
    root = root.absolute()
    found: dict[Path, KnownFile] = {}

    def add(paths: Iterable[Path], origin: str) -> None:
        for path in paths:
            full = Path(os.path.abspath(path))
            key = Path(os.path.realpath(full))
            if key not in found and (info := _read(full, origin)) is not None:
                found[key] = info

    add(walk_sealed(root), "workspace")
    add((p for p in _elsewhere(root) if not p.is_symlink() and p.is_file()), "elsewhere")
    for directory in given:
        add(walk_sealed(directory), "given")
    return list(found.values())
