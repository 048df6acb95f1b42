"""A pipeline's sealed secret: where its datasets' redaction keys come from.

Ingest normally makes a fresh random secret per dataset, so the pseudonyms
and tokens it writes differ from run to run. A pipeline wants a rerun (after
a kill, say) to redact to the same text, so its data step derives the
dataset's redaction keys (:meth:`sealtune.data.redact.DatasetKeys.derive`)
from a 32-byte secret and the step key. That secret is created once per
pipeline and per set of KEKs, sealed under exactly those KEKs, at
``<workspace>/pipelines/<name>/secret-<keyset>.sealed`` (the inventory walk
finds it, so key rotation re-wraps it like the datasets).

What this protects against: derived dataset keys outliving the KEKs that
seal their datasets (the secret is sealed under the same KEKs, so destroying
them shreds it and every token derived from it), a half-written secret (it
is built under a hidden name and linked into place whole, under the version
lock, so a kill leaves no secret or a complete one). What it does not: hide
that two datasets came from the same step key (same key, same redaction,
by design); anyone who can open the secret can derive every dataset secret
of the pipeline, as anyone who can open a dataset's key file can restore its
tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sealtune.data.redact.keys import SECRET_BYTES
from sealtune.errors import IntegrityError
from sealtune.keys.sealing import open_sealed, seal_bytes
from sealtune.keys.versions import CommitGuard
from sealtune.outputs import fsync_dir
from sealtune.pipeline.state import pipeline_dir

if TYPE_CHECKING:
    from pathlib import Path

    from sealtune.workspace import Workspace

__all__ = ["pipeline_secret", "secret_path"]


def secret_path(ws: Workspace, pipeline: str, key_names: Sequence[str]) -> Path:
    """Where the secret of ``pipeline`` sealed under ``key_names`` lives."""
    keyset = hashlib.sha256("\0".join(key_names).encode()).hexdigest()[:16]
    return pipeline_dir(ws, pipeline) / f"secret-{keyset}.sealed"


def pipeline_secret(ws: Workspace, pipeline: str, key_names: Sequence[str]) -> bytes:
    """The pipeline's 32-byte secret under ``key_names``, created (sealed) on first use.

    Raises:
        IntegrityError: the sealed secret was modified or is not a secret.
        KeyringError: a KEK is missing, or destroyed (then the secret is gone with it).
    """
    path = secret_path(ws, pipeline, key_names)
    if not path.exists():
        _create(ws, path, key_names)
    secret = b"".join(open_sealed(path, keys=ws.keys))
    if len(secret) != SECRET_BYTES:
        raise IntegrityError(f"{path}: not a pipeline secret",
                             hint="restore it from a backup, or remove it to start afresh "
                                  "(a new secret redacts to new pseudonyms and tokens)")
    return secret


def _create(ws: Workspace, path: Path, key_names: Sequence[str]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = path.parent / f".{path.name}.{os.urandom(4).hex()}.part"
    try:
        info = seal_bytes(part, secrets.token_bytes(SECRET_BYTES), keys=ws.keys,
                          key_names=key_names)
        with CommitGuard(ws.keys, info.keys, what=f"pipeline secret {path.name}") as guard:
            guard.check()
            with contextlib.suppress(FileExistsError):  # a concurrent first run made one
                os.link(part, path)
        fsync_dir(path.parent)
    finally:
        part.unlink(missing_ok=True)
