"""Creating a workspace from the choices a user makes (what ``sealtune init`` calls).

:class:`WorkspaceOptions` checks the choices when it is made, before any
passphrase is asked for or any file written: the payload algorithm, the
PKCS#11 module and token label (both or neither), the OpenBao address and
mount. :func:`check_new_passphrase` refuses a passphrase shorter than
:data:`MIN_PASSPHRASE` characters. :func:`create_workspace` then makes the
workspace (:meth:`Workspace.init`: config, passphrase-sealed keyring, ledger
key, the local platform key).

What this protects against: a half-made workspace after a choice that could
have been refused up front, and short passphrases (the keyring's KDF only
slows guessing). What it does not: judge a passphrase beyond its length, or
check that a PKCS#11 token or an OpenBao server is reachable (the first key
operation on that backend does). A weakened KDF (``kdf`` below the default)
is the caller's explicit choice; :meth:`Workspace.init` records it in the
ledger as ``workspace.unsafe_fast_kdf``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sealtune.config import DEFAULT_BLOBS, DEFAULT_META, OpenBaoConfig, Pkcs11Config, StorageConfig
from sealtune.errors import UsageError
from sealtune.keys.base import ALGORITHMS, Algorithm
from sealtune.keys.keyfile import KdfParams
from sealtune.workspace import Workspace

__all__ = ["MIN_PASSPHRASE", "WorkspaceOptions", "check_new_passphrase", "create_workspace"]

#: The shortest passphrase a new keyring accepts.
MIN_PASSPHRASE = 12


def check_new_passphrase(passphrase: str, *, source: str) -> str:
    """Return ``passphrase`` if it is long enough for a new keyring.

    Args:
        passphrase: the candidate.
        source: where it came from, for the message (``entered``, ``in $VAR``).

    Raises:
        UsageError: it is shorter than :data:`MIN_PASSPHRASE` characters.
    """
    if len(passphrase) < MIN_PASSPHRASE:
        raise UsageError(f"the passphrase {source} is shorter than {MIN_PASSPHRASE} characters",
                         hint="choose a longer one: the keyring's KDF only slows guessing")
    return passphrase


@dataclass(frozen=True, kw_only=True)
class WorkspaceOptions:
    """The choices of a new workspace (the options of ``sealtune init``).

    Attributes:
        default_key: the name of the local platform key created now.
        algorithm: its payload algorithm, ``aes-256-gcm`` or ``sm4-gcm``.
        pkcs11_module: the PKCS#11 module (.so) of the pkcs11 backend.
        pkcs11_token: the token label of the pkcs11 backend (with the module).
        openbao_addr: the OpenBao/Vault address of the openbao backend.
        openbao_mount: its transit mount path.
        store: where sealed artifacts go (``file:blobs``, ``s3://BUCKET/PREFIX``).
        meta: where catalogues and, for PostgreSQL, the ledger go
            (``sqlite:catalogue.db``, ``postgresql://USER@HOST/DB``; no password).

    Raises:
        UsageError: an unknown algorithm, or one of module and token without the other.
        ConfigError: a storage URL of an unknown scheme or with a password.
    """

    default_key: str = "platform"
    algorithm: str = "aes-256-gcm"
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    openbao_addr: str | None = None
    openbao_mount: str = "transit"
    store: str = DEFAULT_BLOBS
    meta: str = DEFAULT_META

    def __post_init__(self) -> None:
        _ = self.storage  # checks the URLs now, before a passphrase is asked for
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"--algorithm {self.algorithm!r} is not supported",
                             hint="use " + " or ".join(ALGORITHMS))
        if bool(self.pkcs11_module) != bool(self.pkcs11_token):
            raise UsageError("--pkcs11-module and --pkcs11-token go together")

    @property
    def pkcs11(self) -> Pkcs11Config | None:
        """The pkcs11 backend's configuration, if one was given."""
        if self.pkcs11_module and self.pkcs11_token:
            return Pkcs11Config(module=self.pkcs11_module, token_label=self.pkcs11_token)
        return None

    @property
    def storage(self) -> StorageConfig:
        """Where artifacts and catalogues go."""
        return StorageConfig(blobs=self.store, meta=self.meta)

    @property
    def openbao(self) -> OpenBaoConfig | None:
        """The openbao backend's configuration, if one was given."""
        if self.openbao_addr:
            return OpenBaoConfig(addr=self.openbao_addr, mount=self.openbao_mount)
        return None


def create_workspace(root: Path, options: WorkspaceOptions, *, passphrase: str,
                     kdf: KdfParams | None = None) -> Workspace:
    """Create the workspace ``options`` describe at ``root``, open; the caller closes it.

    Raises:
        UsageError: the passphrase is too short.
        WorkspaceError: ``root`` already holds a workspace.
    """
    check_new_passphrase(passphrase, source="given")
    return Workspace.init(root, passphrase=passphrase, kdf=kdf, default_key=options.default_key,
                          algorithm=cast(Algorithm, options.algorithm), pkcs11=options.pkcs11,
                          openbao=options.openbao, storage=options.storage)
