"""Measuring what a sandboxed run is made of: digests of code, config, base model and inputs.

:func:`measure` hashes the code trees, the config bytes, the base model and
each input; :class:`Measurement` folds them into one digest over canonical
JSON. A stage records it in the audit ledger with ``sandbox.created`` so that
a model can be traced to exactly what produced it. Symlinks are hashed as
links (never followed) and anything that is neither a file nor a link is
refused.

What this protects against: a run whose code, config or inputs change without
a trace in the ledger. What it does not: this is a software measurement taken
by the host, not a TEE attestation — nothing here proves to a third party
that the measured code is what ran (the host could lie); only the trees the
caller passes are measured (the job passes sealtune's own code, not the
interpreter or the virtual environment's libraries); and a file changed
between measuring and mounting is not detected.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sealtune.errors import ConfigError


@dataclass(frozen=True)
class Measurement:
    """Digests of what a sandboxed run is made of (``sha256:`` hex each)."""

    code: str
    config: str
    base_model: str | None
    inputs: Mapping[str, str]

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "config": self.config, "base_model": self.base_model,
                "inputs": dict(sorted(self.inputs.items()))}

    @property
    def digest(self) -> str:
        """One digest over the canonical JSON of all the parts."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()


def digest_tree(root: Path, *, exclude: Sequence[str] = ("__pycache__",)) -> str:
    """sha256 over sorted relative paths and the contents of a file or directory.

    Each entry adds ``F <path>\\0<sha256>\\n`` (regular file) or
    ``L <path>\\0<target>\\n`` (symlink, not followed); files stream in chunks.
    """
    if root.is_file():
        with root.open("rb") as fh:
            return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in exclude]
        for name in filenames:
            if name not in exclude and not name.endswith(".pyc"):
                path = Path(dirpath, name)
                entries.append((path.relative_to(root).as_posix(), path))
    outer = hashlib.sha256()
    for rel, path in sorted(entries, key=lambda e: e[0].encode()):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            outer.update(f"L {rel}\0{os.readlink(path)}\n".encode())
        elif stat.S_ISREG(mode):
            with path.open("rb") as fh:
                outer.update(f"F {rel}\0{hashlib.file_digest(fh, 'sha256').hexdigest()}\n".encode())
        else:
            raise ConfigError(f"cannot measure {path}: not a regular file or symlink")
    return "sha256:" + outer.hexdigest()


def measure(*, code: Sequence[Path], config: bytes, base_model: Path | None = None,
            inputs: Mapping[str, Path] | None = None) -> Measurement:
    """Digest the code dirs, the config bytes, the base model and each input."""
    code_digest = hashlib.sha256("\n".join(digest_tree(p) for p in code).encode()).hexdigest()
    return Measurement(
        code="sha256:" + code_digest,
        config="sha256:" + hashlib.sha256(config).hexdigest(),
        base_model=None if base_model is None else digest_tree(base_model),
        inputs={name: digest_tree(path) for name, path in (inputs or {}).items()},
    )
