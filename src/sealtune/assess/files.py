"""A model directory's files as the release gate reads them: listed, sized, opened, digested.

:class:`PlainTree` walks a directory in the clear (recursively, links not
followed); :class:`SealedTree` is a workspace model, whose ``NAME.sealed``
files are opened into memory with the workspace's keys (through
:mod:`sealtune.assess._sealing`), plaintext never written to disk. Both
give every entry as a :class:`FileEntry` (relative path, kind, size) and
open regular files for reading; :func:`tree_digest` is the model digest of
:func:`sealtune.serve.model.model_digest` (SHA-256 over ``<sha256> <name>``
lines of the plaintext), so the report names a model exactly as attestation
and the registry do.

What this protects against: a link or a special file being followed or
opened (they are listed as such, never read); a sealed file read without its
integrity check. What it does not: a plain directory changed between the
scan and the load; the gate compares the digest the sandbox loaded with the
one scanned to catch that.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from sealtune.errors import ConfigError

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

SEALED_SUFFIX = ".sealed"
MAX_ENTRIES = 4096
_BLOCK = 1 << 20
Kind = Literal["file", "link", "dir", "special"]


@dataclass(frozen=True)
class FileEntry:
    """One entry of a model directory (plaintext name, for sealed files)."""

    name: str
    kind: Kind
    size: int
    executable: bool = False


class PlainTree:
    """A model directory in the clear."""

    sealed = False

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a model directory",
                              hint="pass a model directory or a workspace model name")
        self.root = root
        self.label = str(root)

    def entries(self) -> list[FileEntry]:
        """Every entry under the root, sorted; links and special files are not followed."""
        out: list[FileEntry] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in sorted(dirnames + filenames):
                path = Path(dirpath, name)
                out.append(_entry(path, path.relative_to(self.root).as_posix()))
                if len(out) > MAX_ENTRIES:
                    raise ConfigError(f"{self.root} holds more than {MAX_ENTRIES} entries: "
                                      "not a model directory")
            dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
        return sorted(out, key=lambda e: e.name)

    def open(self, name: str) -> BinaryIO:
        """Open the regular file ``name`` (a relative path of :meth:`entries`)."""
        path = self.root / name
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path} is not a regular file")
        return path.open("rb")


def _entry(path: Path, name: str) -> FileEntry:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return FileEntry(name, "link", 0)
    if stat.S_ISDIR(st.st_mode):
        return FileEntry(name, "dir", 0)
    if not stat.S_ISREG(st.st_mode):
        return FileEntry(name, "special", 0)
    return FileEntry(name, "file", st.st_size, executable=bool(st.st_mode & 0o111))


class SealedTree:
    """A workspace model: ``*.sealed`` files opened in memory, other files as they are."""

    sealed = True

    def __init__(self, root: Path, *, keys: KeyService) -> None:
        self.plain = PlainTree(root)
        self.root = root
        self.label = str(root)
        self._keys = keys
        self._cache: dict[str, bytes] = {}

    def entries(self) -> list[FileEntry]:
        out = []
        for entry in self.plain.entries():
            if entry.kind == "file" and entry.name.endswith(SEALED_SUFFIX):
                name = entry.name[: -len(SEALED_SUFFIX)]
                out.append(FileEntry(name, "file", len(self._plaintext(name))))
            else:
                out.append(entry)
        return sorted(out, key=lambda e: e.name)

    def _plaintext(self, name: str) -> bytes:
        from sealtune.assess._sealing import open_small

        if name not in self._cache:
            self._cache[name] = open_small(self.root / (name + SEALED_SUFFIX), keys=self._keys)
        return self._cache[name]

    def open(self, name: str) -> BinaryIO:
        if (self.root / (name + SEALED_SUFFIX)).is_file():
            return io.BytesIO(self._plaintext(name))
        return self.plain.open(name)


ModelTree = PlainTree | SealedTree


def file_sha256(tree: ModelTree, name: str) -> str:
    """Hex SHA-256 of the plaintext of ``name``, streamed."""
    digest = hashlib.sha256()
    with tree.open(name) as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(tree: ModelTree) -> str:
    """The model digest: hex SHA-256 over ``<sha256> <name>\\n`` of each top-level file.

    The same construction as :func:`sealtune.serve.model.model_digest` (what the
    server attests), over the top-level regular files.
    """
    manifest = hashlib.sha256()
    for entry in _top_files(tree):
        manifest.update(f"{file_sha256(tree, entry.name)} {entry.name}\n".encode())
    return manifest.hexdigest()


def adapter_digest(adapter: str, base: str) -> str:
    """An adapter served over a base, as :func:`sealtune.serve.model.adapter_digest` measures it."""
    return hashlib.sha256(f"adapter {adapter}\nbase {base}\n".encode()).hexdigest()


def _top_files(tree: ModelTree) -> Iterator[FileEntry]:
    return (e for e in tree.entries() if e.kind == "file" and "/" not in e.name)
