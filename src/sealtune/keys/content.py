"""The content digest of a sealed file: what key rotation never changes.

A sealed file (``docs/formats/sealed-v1.md``) is ``prefix | slot A | slot B |
payload``. Re-wrapping (rotation, adding or removing a KEK) rewrites only the
two slots; the prefix (file id, suite, key commitment) and the payload stay
byte for byte. The **content digest** is therefore

    SHA-256(prefix || payload)         (the 68 prefix bytes, then the payload)

skipping the slots. It is what manifests, BOMs and model records bind
(:func:`content_digest`), so a rotation leaves every record true. Anyone can
recompute it without a key, e.g. with coreutils:
``cat <(head -c 68 F) <(tail -c +$((68 + 2*S + 1)) F) | sha256sum``, where
``S`` is the slot size in the prefix (2048 by default).

What this protects against: a stored sealed file swapped for another sealed
file, or its payload or prefix edited, without the record noticing. What it
does not: it says nothing about the slots (who can open the file): those are
authenticated under the data key when the file is opened, not here; and
nothing here is a signature (whoever rewrites the file and the record
together is stopped only by what signs the record).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sealtune.core.envelope import PREFIX_BYTES, parse_prefix
from sealtune.errors import IntegrityError, SealtuneError

__all__ = ["DIGEST_LABEL", "content_digest", "content_digest_of", "labelled_digest"]

#: The prefix of a labelled content digest, as model records store it.
DIGEST_LABEL = "content-sha256"
_BLOCK = 1 << 20


def content_digest(path: Path) -> str:
    """Hex SHA-256 over the prefix and the payload of the sealed file ``path``.

    Reads the file once, in 1 MiB blocks (linear in its size).

    Raises:
        IntegrityError: ``path`` is not a well-formed sealtune v1 file.
        SealtuneError: it cannot be read.
    """
    try:
        with path.open("rb") as fh:
            raw = fh.read(PREFIX_BYTES)
            try:
                prefix = parse_prefix(raw)
            except IntegrityError:
                raise IntegrityError(
                    f"{path} is not a well-formed sealtune v1 file",
                    hint="restore it from a trusted copy",
                ) from None
            digest = hashlib.sha256(raw)
            fh.seek(prefix.payload_offset)
            for block in iter(lambda: fh.read(_BLOCK), b""):
                digest.update(block)
    except OSError as exc:
        raise SealtuneError(
            f"{path}: {exc.strerror or type(exc).__name__}", hint="check the path and permissions"
        ) from None
    return digest.hexdigest()


def content_digest_of(data: bytes) -> str | None:
    """:func:`content_digest` of a sealed file held in memory; None if it is not one."""
    try:
        prefix = parse_prefix(data[:PREFIX_BYTES])
    except IntegrityError:
        return None
    return hashlib.sha256(data[:PREFIX_BYTES] + data[prefix.payload_offset:]).hexdigest()


def labelled_digest(path: Path) -> str:
    """``content-sha256:<hex>``: the content digest with its label (model records)."""
    return f"{DIGEST_LABEL}:{content_digest(path)}"
