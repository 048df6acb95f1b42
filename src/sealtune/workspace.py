"""The workspace: one directory (``$SEALTUNE_HOME``, default ``./.sealtune``).

Layout::

    config.toml       typed config (fails closed)
    keyring.sealed    passphrase-sealed keyring file (local KEKs, key catalogue,
                      ledger signing key)
    ledger.db         the audit ledger (SQLite, WAL)

The directory is created ``0700`` and files ``0600``. The workspace unlocks the
keyring lazily (passphrase from the caller, ``SEALTUNE_PASSPHRASE``, or an
interactive prompt supplied by the CLI) and opens the ledger with the signing
key from the keyring.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from sealtune.config import (
    LedgerConfig,
    OpenBaoConfig,
    Pkcs11Config,
    WorkspaceConfig,
    load_config,
)
from sealtune.errors import ConfigError, IntegrityError, WorkspaceError
from sealtune.keys.keyfile import KdfParams, KeyFile, atomic_write, b64decode, b64encode
from sealtune.ledger.entry import Outcome

if TYPE_CHECKING:
    from sealtune.core.note import NoteSigner, NoteVerifier
    from sealtune.keys.base import Algorithm
    from sealtune.keys.service import KeyService
    from sealtune.ledger.log import Ledger

ENV_HOME = "SEALTUNE_HOME"
ENV_PASSPHRASE = "SEALTUNE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
ENV_ACTOR = "SEALTUNE_ACTOR"
LEDGER_KEY = "signing-key"


def default_home() -> Path:
    """``$SEALTUNE_HOME`` or ``./.sealtune``."""
    return Path(os.environ.get(ENV_HOME) or ".sealtune")


def env_passphrase() -> str | None:
    """The passphrase from ``SEALTUNE_PASSPHRASE`` if set and non-empty."""
    return os.environ.get(ENV_PASSPHRASE) or None


class Workspace:
    """An opened workspace. Use :meth:`init` or :meth:`open`."""

    def __init__(self, root: Path, config: WorkspaceConfig, passphrase: Callable[[], str]) -> None:
        self.root = root.absolute()  # stages hand paths to the sandbox, which needs them absolute
        self.config = config
        self._passphrase = passphrase
        self._keyfile: KeyFile | None = None
        self._ledger: Ledger | None = None
        self._keys: KeyService | None = None

    # -- paths -------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def keyfile_path(self) -> Path:
        return self.root / "keyring.sealed"

    @property
    def ledger_path(self) -> Path:
        return self.root / "ledger.db"

    # -- creation / opening ---------------------------------------------------------

    @classmethod
    def init(
        cls,
        root: Path,
        *,
        passphrase: str,
        kdf: KdfParams | None = None,
        default_key: str = "platform",
        algorithm: Algorithm = "aes-256-gcm",
        pkcs11: Pkcs11Config | None = None,
        openbao: OpenBaoConfig | None = None,
        ledger: LedgerConfig | None = None,
    ) -> Workspace:
        """Create a workspace: config, keyring, ledger signing key, a default local KEK.

        Raises:
            WorkspaceError: ``root`` already holds a workspace.
        """
        if (root / "config.toml").exists() or (root / "keyring.sealed").exists():
            raise WorkspaceError(f"{root} already holds a sealtune workspace")
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        config = WorkspaceConfig(
            workspace_id=secrets.token_hex(8),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            default_key=default_key,
            ledger=ledger or LedgerConfig(),
            pkcs11=pkcs11,
            openbao=openbao,
        )
        keyfile = KeyFile.create(root / "keyring.sealed", passphrase, kdf=kdf)
        signing = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        keyfile.put("ledger", LEDGER_KEY, {"ed25519": b64encode(signing)})
        atomic_write(root / "config.toml", config.to_toml().encode("utf-8"))
        ws = cls(root, config, lambda: passphrase)
        ws._keyfile = keyfile
        ws.audit(
            "workspace.init",
            str(root.name),
            details={
                "workspace_id": config.workspace_id,
                "kdf_memory_kib": (kdf or KdfParams()).memory_kib,
            },
        )
        if kdf is not None and kdf.memory_kib < KdfParams().memory_kib:
            ws.audit(
                "workspace.unsafe_fast_kdf",
                str(root.name),
                outcome="success",
                details={"memory_kib": kdf.memory_kib, "iterations": kdf.iterations},
            )
        ws.keys.create(default_key, backend="local", algorithm=algorithm)
        return ws

    @classmethod
    def open(
        cls,
        root: Path | None = None,
        *,
        passphrase: str | None = None,
        prompt: Callable[[], str] | None = None,
    ) -> Workspace:
        """Open an existing workspace (the keyring is unlocked on first use).

        Raises:
            WorkspaceError: no workspace at ``root``.
            ConfigError: its config is invalid.
        """
        root = root or default_home()
        if not (root / "config.toml").exists():
            raise WorkspaceError(
                f"no sealtune workspace at {root}", hint="run 'sealtune init' or set SEALTUNE_HOME"
            )
        config = load_config(root / "config.toml")

        def resolve() -> str:
            value = passphrase or env_passphrase()
            if value:
                return value
            if prompt is not None:
                return prompt()
            raise ConfigError(
                "the keyring passphrase is needed",
                hint=f"set {ENV_PASSPHRASE} or run interactively",
            )

        return cls(root, config, resolve)

    # -- components ----------------------------------------------------------------

    @property
    def keyfile(self) -> KeyFile:
        """The unlocked keyring file.

        Opened with the key ``sealtune unlock`` cached in the kernel keyring
        when that holds this keyring's key, else with the passphrase (asked
        once). A cached key that does not open the file is ignored.
        """
        if self._keyfile is None:
            self._keyfile = self.keyfile_from_cache() or KeyFile.open(
                self.keyfile_path, self._passphrase())
        return self._keyfile

    def keyfile_from_cache(self) -> KeyFile | None:
        """The keyring opened from ``sealtune unlock``'s cache only, or None (nothing asked)."""
        if self._keyfile is None:
            from sealtune.keys.unlock import cached_key

            try:
                self._keyfile = KeyFile.open_with_key(
                    self.keyfile_path, cached_key(self.config.workspace_id))
            except IntegrityError:
                return None  # stale or wrong: the passphrase decides, and reports tampering
        return self._keyfile

    def unlock_with_passphrase(self) -> KeyFile:
        """The keyring opened with the passphrase, never the cache (``sealtune unlock``)."""
        self._keyfile = KeyFile.open(self.keyfile_path, self._passphrase())
        return self._keyfile

    @property
    def keys(self) -> KeyService:
        """Key operations with catalogue and audit events."""
        if self._keys is None:
            from sealtune.keys.service import KeyService

            self._keys = KeyService(self)
        return self._keys

    @property
    def origin(self) -> str:
        """The ledger's origin (checkpoint log identity) for this workspace."""
        return f"sealtune.local/{self.config.workspace_id}/ledger"

    def ledger_signer(self) -> NoteSigner:
        """The Ed25519 checkpoint signer held in the keyring."""
        from sealtune.core.note import NoteSigner

        rec = self.keyfile.get("ledger", LEDGER_KEY)
        if rec is None:
            raise WorkspaceError(f"{self.keyfile_path} holds no ledger signing key")
        key = Ed25519PrivateKey.from_private_bytes(b64decode(rec["ed25519"]))
        return NoteSigner(key, f"sealtune-ledger-{self.config.workspace_id}")

    def ledger_verifier(self) -> NoteVerifier:
        """The verifier for this workspace's checkpoints (public key only)."""
        from sealtune.core.note import NoteVerifier

        return NoteVerifier.from_key_string(self.ledger_signer().verifier_key)

    @property
    def ledger(self) -> Ledger:
        """The audit ledger, opened with the signing key."""
        if self._ledger is None:
            from sealtune.ledger.log import Ledger

            cfg = self.config.ledger
            self._ledger = Ledger.open(
                self.ledger_path,
                signer=self.ledger_signer(),
                origin=self.origin,
                checkpoint_every=cfg.checkpoint_every,
                segment_max_entries=cfg.segment_max_entries,
                segment_max_age=timedelta(hours=cfg.segment_max_age_hours),
            )
        return self._ledger

    @property
    def actor(self) -> str:
        """Who acts: ``$SEALTUNE_ACTOR`` or ``user@host``."""
        explicit = os.environ.get(ENV_ACTOR)
        if explicit:
            return explicit
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"uid{os.getuid()}"
        return f"{user}@{socket.gethostname()}"

    def audit(
        self,
        action: str,
        resource: str,
        *,
        outcome: Outcome = "success",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an event to the audit ledger."""
        self.ledger.append(
            actor=self.actor, action=action, resource=resource, outcome=outcome, details=details
        )

    def close(self) -> None:
        """Close the ledger connection."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
