"""A wrapped data key: one record of a sealed file's header.

:class:`WrappedKey` is part of the sealed-file format (``docs/formats/sealed-v1.md``):
the header's slots hold a list of them, and every Keyring backend returns one
from ``wrap`` and takes one back in ``unwrap``. It lives in ``core`` so that
the format does not depend on the key-management layer above it;
:mod:`sealtune.keys.base` re-exports it as part of the Keyring port.

What this protects against: nothing by itself; it is a plain record. The
blob is the backend's ciphertext of a data key, never the key in clear, and
the wrap is bound to one file by the associated data the caller passes
(:func:`sealtune.core.envelope_header.wrap_aad`). What it does not: check
that the blob authenticates (the backend does that on unwrap).

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WrappedKey"]


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under one version of one KEK.

    Attributes:
        kek_uri: ``<backend>:<name>``, e.g. ``local:platform`` or ``pkcs11:cmk``.
        version: the KEK version that wrapped it.
        blob: the backend's ciphertext (opaque; never contains the key in clear).
    """

    kek_uri: str
    version: int
    blob: bytes

    @property
    def backend(self) -> str:
        """The keyring backend, the part of :attr:`kek_uri` before the colon."""
        return self.kek_uri.split(":", 1)[0]

    @property
    def name(self) -> str:
        """The KEK's name, the part of :attr:`kek_uri` after the colon."""
        return self.kek_uri.split(":", 1)[1]
