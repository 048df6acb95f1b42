"""The release gate's one door to sealed files (the sealing API of the keys and data stages).

Every sealed read or write of :mod:`sealtune.assess` goes through these three
functions, so that the gate depends on one small surface: open a small
sealed file into memory, seal a small value, unwrap a file's data key for
the sandbox.

What this protects against: plaintext of a sealed file reaching the disk
(it is read into memory only), an oversized sealed file exhausting memory
(:data:`MAX_SMALL`). What it does not: the plaintext is in this process's
memory while it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sealtune.errors import IntegrityError

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService
    from sealtune.workspace import Workspace

#: The largest sealed value opened into memory here (a report, a canary seed, a config).
MAX_SMALL = 64 << 20


def open_small(path: Path, *, keys: KeyService) -> bytes:
    """The authenticated plaintext of a small sealed file.

    Raises:
        IntegrityError: modified, truncated, or larger than :data:`MAX_SMALL`.
        KeyringError: none of its KEKs is available.
    """
    from sealtune.data.sealed import iter_sealed_chunks

    out = bytearray()
    for chunk in iter_sealed_chunks(path, keys=keys):
        out += chunk
        if len(out) > MAX_SMALL:
            raise IntegrityError(f"{path} is larger than a gate file can be")
    return bytes(out)


def seal_small(path: Path, data: bytes, *, keys: KeyService, key_names: Sequence[str]) -> str:
    """Seal ``data`` into ``path``; return its content digest (``content-sha256:...``)."""
    from sealtune.data.sealed import seal_bytes

    return "content-sha256:" + seal_bytes(path, data, keys=keys,
                                          key_names=key_names).content_sha256


def data_key(ws: Workspace, path: Path) -> bytearray:
    """A sealed file's data key, unwrapped through the workspace (audited), for the sandbox."""
    from sealtune.train.job_keys import _file_key

    return _file_key(ws, path)


def unseal_with_key(path: Path, dst: BinaryIO, key: bytes | bytearray) -> None:
    """Authenticate and decrypt ``path`` into ``dst`` with its data key (inside the sandbox).

    Every segment is authenticated before it is written; on an error ``dst``
    may hold earlier segments: discard it.

    Raises:
        IntegrityError: the file was modified, or the key is not its data key.
    """
    from sealtune.core.envelope import decrypt_payload, read_header, unlock_header

    with path.open("rb") as fh:
        try:
            opened = unlock_header(read_header(fh), unwrap=lambda _entry, _aad: bytes(key))
            decrypt_payload(fh, dst, opened=opened)
        except IntegrityError:
            raise IntegrityError(f"{path.name} failed its integrity check") from None
