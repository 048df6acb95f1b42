"""The release gate's small sealed values, through :mod:`sealtune.keys.sealing`.

The gate seals and opens only small values (its report, a job's canary
seed); everything else (model files, the dataset) is opened inside the
sandbox with its data key (:func:`sealtune.keys.sealing.unseal_into`). This
module adds one thing to the sealing API: a cap on what is opened into
memory.

What this protects against: plaintext of a sealed file reaching the disk
(it is read into memory only), an oversized sealed file exhausting memory
(:data:`MAX_SMALL`). What it does not: the plaintext is in this process's
memory while it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sealtune.errors import IntegrityError
from sealtune.keys.sealing import open_sealed

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

#: The largest sealed value opened into memory here (a report, a canary seed, a config).
MAX_SMALL = 64 << 20


def open_small(path: Path, *, keys: KeyService) -> bytes:
    """The authenticated plaintext of a small sealed file.

    Raises:
        IntegrityError: modified, truncated, or larger than :data:`MAX_SMALL`.
        KeyringError: none of its KEKs is available.
    """
    out = bytearray()
    for chunk in open_sealed(path, keys=keys):
        out += chunk
        if len(out) > MAX_SMALL:
            raise IntegrityError(f"{path} is larger than a gate file can be")
    return bytes(out)
