"""Step keys: one digest over everything a step's result depends on.

A step's key is SHA-256 over the canonical JSON of: the step's kind, the
sealtune version and a digest of sealtune's own source tree (every file,
as :func:`sealtune.sandbox.measurement.digest_tree` hashes the code the
sandbox runs), the versions of the packages that compute the step (read from
the installed distributions' metadata, without importing them), the step's
normalised settings (defaults filled in, the data policy by its digest, not
its file's bytes) and the digests of its inputs. The runner skips a step
whose key is unchanged and whose recorded outputs are intact.

What this protects against: a cached result reused after the code, a
library, a setting or an input changed. What it does not: code outside
sealtune and the named packages (the interpreter, other libraries, the
kernel) is not in the key; a change there reuses results (``--force-step``
reruns a step); and the key is not a signature (the run state is plain JSON).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import sealtune
from sealtune.sandbox.measurement import digest_tree

__all__ = ["ASSESS_PACKAGES", "DATA_PACKAGES", "TRAIN_PACKAGES", "canonical", "code_digest",
           "file_sha256", "package_versions", "step_key", "tree_digest"]

#: Distributions whose version changes what the data step computes.
DATA_PACKAGES = ("pyyaml", "python-stdnum", "phonenumbers", "datasketch", "numpy",
                 "cyclonedx-python-lib", "cryptography")
#: Distributions whose version changes what the train step computes.
TRAIN_PACKAGES = ("torch", "transformers", "peft", "opacus", "safetensors", "tokenizers",
                  "accelerate", "numpy", "cryptography")
#: Distributions whose version changes what the release gate measures or judges.
ASSESS_PACKAGES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "numpy",
                   "fickling", "matplotlib", "cryptography")
KEY_FORMAT = "sealtune.pipeline-step/v1"


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


@cache
def code_digest() -> str:
    """``sha256:`` digest of sealtune's installed source tree (computed once per process)."""
    return digest_tree(Path(sealtune.__file__).resolve().parent)


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def file_sha256(path: Path) -> str:
    """``sha256:`` hex digest of a file, read in 1 MiB blocks."""
    with path.open("rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def tree_digest(path: Path) -> str:
    """``sha256:`` digest of a file or directory tree (links hashed as links)."""
    return digest_tree(path)


def step_key(*, kind: str, settings: Mapping[str, Any], inputs: Mapping[str, str],
             packages: Sequence[str]) -> str:
    """The key of a step run with ``settings`` on ``inputs`` (name -> digest)."""
    doc = {"format": KEY_FORMAT, "step": kind, "sealtune": sealtune.__version__,
           "code": code_digest(), "packages": package_versions(packages),
           "settings": dict(settings), "inputs": dict(inputs)}
    return "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
