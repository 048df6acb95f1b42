"""The workspace: one directory (``$SEALTUNE_HOME``, default ``./.sealtune``).

Layout::

    config.toml       typed config (fails closed)
    keyring.sealed    passphrase-sealed keyring file (local KEKs, key catalogue,
                      ledger signing key)
    ledger.db         the audit ledger (SQLite, WAL), unless ``[storage] meta``
                      is PostgreSQL: then the ledger lives in that database
    ledger.trust      the newest global checkpoint of the ledger this workspace
                      signed or verified (the trust state, outside the database)
    catalogue.db      catalogue records (:class:`~sealtune.storage.MetaStore`,
                      default ``sqlite:catalogue.db``; or PostgreSQL)
    blobs/            sealed artifacts (:class:`~sealtune.storage.BlobStore`,
                      default ``file:blobs``; or an S3 bucket)
    registry/         the model registry's blobs, catalogue and trust state
                      (kept here even with ``[storage]``: not yet on the ports)

The directory is created ``0700`` and files ``0600``. The workspace unlocks the
keyring lazily (passphrase from the caller, ``SEALTUNE_PASSPHRASE``, or an
interactive prompt supplied by the CLI) and opens the ledger with the signing
key from the keyring, refusing a ledger that is missing or does not contain
the trust state's checkpoint (deleted, rolled back, truncated or forked).
:meth:`Workspace.close` signs a checkpoint over everything the command
appended and moves the trust state forward, so every command leaves a signed
log behind. What it does not protect against: someone who rewrites both
``ledger.db`` and ``ledger.trust`` (see :mod:`sealtune.ledger.trust`).
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from sealtune.config import (
    LedgerConfig,
    OpenBaoConfig,
    Pkcs11Config,
    StorageConfig,
    WorkspaceConfig,
    load_config,
)
from sealtune.errors import ConfigError, IntegrityError, WorkspaceError
from sealtune.keys.keyfile import KdfParams, KeyFile, b64decode, b64encode
from sealtune.ledger.entry import Outcome
from sealtune.outputs import write_atomic

if TYPE_CHECKING:
    from sealtune.core.note import NoteSigner, NoteVerifier
    from sealtune.keys.base import Algorithm
    from sealtune.keys.service import KeyService
    from sealtune.ledger.log import Ledger
    from sealtune.ledger.trust import TrustState
    from sealtune.ledger.verify_global import WitnessPolicy
    from sealtune.storage import BlobStore, MetaStore

ENV_HOME = "SEALTUNE_HOME"
ENV_PASSPHRASE = "SEALTUNE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
ENV_ACTOR = "SEALTUNE_ACTOR"
_ACTING_AS: contextvars.ContextVar[str | None] = contextvars.ContextVar("sealtune_actor",
                                                                      default=None)


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Within the block (this thread or task only), :attr:`Workspace.actor` is ``actor``.

    For a server acting for an authenticated caller (the console: the API key
    id), so the stage it calls authorises and records that caller, not the
    server process's ``$SEALTUNE_ACTOR``.
    """
    if not actor:
        raise WorkspaceError("acting_as: empty actor")
    token = _ACTING_AS.set(actor)
    try:
        yield
    finally:
        _ACTING_AS.reset(token)
LEDGER_KEY = "signing-key"
#: The stages' local working directories (:meth:`Workspace.area`).
AREAS = ("datasets", "jobs", "models", "pipelines", "assessments", "bases", "registry", "uploads")


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
        self._creating = False  # init() may create the ledger and its trust state
        self._check_ledger = False  # see open()
        self._ledger_unchecked = False  # see ledger_for_reading()
        self._blobs: BlobStore | None = None
        self._meta: MetaStore | None = None

    # -- paths -------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def keyfile_path(self) -> Path:
        return self.root / "keyring.sealed"

    @property
    def ledger_path(self) -> Path:
        """The SQLite ledger file (unused when the ledger is in PostgreSQL)."""
        return self.root / "ledger.db"

    def area(self, name: str, *, create: bool = False) -> Path:
        """The local working directory of one kind of artifact (``datasets``, ``jobs``, ...).

        The one place that says where stage directories are; with ``create`` it is
        made ``0700`` if missing.
        """
        if name not in AREAS:
            raise WorkspaceError(f"{name!r} is not a workspace area",
                                 hint=f"known areas: {', '.join(AREAS)}")
        path = self.root / name
        if create:
            path.mkdir(mode=0o700, exist_ok=True)
        return path

    @property
    def ledger_location(self) -> str:
        """Where the ledger is: ``ledger.db`` or the ``[storage] meta`` PostgreSQL URL."""
        meta = self.config.storage.meta
        return meta if meta.startswith("postgresql://") else str(self.ledger_path)

    @property
    def blobs(self) -> BlobStore:
        """The sealed-artifact store (``[storage] blobs``), opened and probed on first use."""
        if self._blobs is None:
            from sealtune.storage import open_blob_store

            self._blobs = open_blob_store(self.config.storage.blobs, root=self.root)
        return self._blobs

    @property
    def meta(self) -> MetaStore:
        """The catalogue store (``[storage] meta``), opened on first use."""
        if self._meta is None:
            from sealtune.storage import open_meta_store

            self._meta = open_meta_store(self.config.storage.meta, root=self.root)
        return self._meta

    @property
    def trust(self) -> TrustState:
        """The ledger's trust state (``ledger.trust``)."""
        from sealtune.ledger.trust import TrustState

        return TrustState(self.root / "ledger.trust")

    def publish(self, collection: str, name: str, directory: Path) -> None:
        """Publish a finished sealed artifact to the configured remote stores.

        With the embedded default storage the working directory is the artifact and
        nothing is copied. Otherwise every file goes to :attr:`blobs` (write-once)
        and a catalogue record with their digests to :attr:`meta`, and a
        ``storage.publish`` event pins the record's digest in the ledger.
        """
        if self.config.storage.is_default:
            return
        from sealtune.keys.remote import wraps_of
        from sealtune.storage import redact_url
        from sealtune.storage.artifacts import publish_dir, record_digest

        record = publish_dir(self.blobs, self.meta, collection=collection, name=name,
                             directory=directory, describe=wraps_of)
        self.audit("storage.publish", f"{collection}/{name}", details={
            "record_sha256": record_digest(record), "store": redact_url(self.blobs.url)})

    def publish_pending(self, collections: tuple[str, ...] = ("datasets", "models")
                        ) -> list[str]:
        """Publish the finished local artifacts that no catalogue record lists yet.

        A publication that failed (the store unreachable) leaves the artifact
        local-only; this retries it (blobs already written are found and kept).
        Build directories (dot names) are never published. Returns
        ``collection/name`` of each artifact published.
        """
        if self.config.storage.is_default:
            return []
        done = []
        for collection in collections:
            area = self.area(collection)
            if not area.is_dir():
                continue
            listed = {record.key for record in self.meta.list(collection)}
            for path in sorted(area.iterdir()):
                if path.is_dir() and not path.name.startswith(".") and path.name not in listed:
                    self.publish(collection, path.name, path)
                    done.append(f"{collection}/{path.name}")
        return done

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
        storage: StorageConfig | None = None,
    ) -> Workspace:
        """Create a workspace: config, keyring, ledger signing key, a default local KEK.

        With ``storage``, sealed artifacts go to its blob store and catalogues (and the
        ledger, for PostgreSQL) to its metadata store; both are opened (and the blob
        store probed) before anything is written.

        Raises:
            WorkspaceError: ``root`` already holds a workspace.
            StorageError: a configured store is unreachable or fails its probe.
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
            storage=storage or StorageConfig(),
        )
        if not config.storage.is_default:
            # Fail before the keyring exists: a remote store that is unreachable, or
            # that ignores conditional writes, is refused with nothing written.
            probe = cls(root, config, lambda: passphrase)
            try:
                _ = probe.blobs, probe.meta
            finally:
                probe.close()
        keyfile = KeyFile.create(root / "keyring.sealed", passphrase, kdf=kdf)
        signing = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        keyfile.put("ledger", LEDGER_KEY, {"ed25519": b64encode(signing)})
        write_atomic(root / "config.toml", config.to_toml().encode("utf-8"))
        ws = cls(root, config, lambda: passphrase)
        ws._keyfile = keyfile
        ws._creating = True
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
        ws.seal_ledger()  # signed, and the trust state exists, before anyone else opens it
        return ws

    @classmethod
    def open(
        cls,
        root: Path | None = None,
        *,
        passphrase: str | None = None,
        prompt: Callable[[], str] | None = None,
        check_ledger: bool = True,
    ) -> Workspace:
        """Open an existing workspace (the keyring is unlocked on first use).

        Args:
            root: the workspace directory (default ``$SEALTUNE_HOME`` or ``./.sealtune``).
            passphrase: the keyring passphrase (else ``SEALTUNE_PASSPHRASE`` or ``prompt``).
            prompt: asks for the passphrase interactively.
            check_ledger: when the keyring is unlocked, also open the audit ledger and
                check it against the trust state, so that nothing is done under the
                keys of a workspace whose audit log is missing or rolled back. Only
                the audit commands that inspect or repair the log turn it off.

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

        ws = cls(root, config, resolve)
        ws._check_ledger = check_ledger
        return ws

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
            self._check_ledger_once()
        return self._keyfile

    def _check_ledger_once(self) -> None:
        if self._check_ledger:
            # Before any key is used: a command must not act unaudited on a
            # workspace whose log is missing or rolled back (IntegrityError).
            self._check_ledger = False
            _ = self.ledger

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
        self._check_ledger_once()
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
        """The audit ledger, opened with the signing key and checked against the trust state.

        Raises:
            IntegrityError: ``ledger.db`` or ``ledger.trust`` is missing, or the
                ledger does not contain the trust state's checkpoint.
        """
        if self._ledger is None:
            from sealtune.ledger.log import Ledger

            self._check_ledger = False  # opened here: unlocking must not open it a second time
            cfg = self.config.ledger
            signer = self.ledger_signer()
            # Read the trust state before the database: it only ever names
            # checkpoints that were committed first.
            trusted = None if self._creating else self.trust.read()
            if trusted is None and not self._creating:
                raise self.trust.missing_error()
            ledger = Ledger.open(
                self.ledger_location,
                signer=signer,
                origin=self.origin,
                checkpoint_every=cfg.checkpoint_every,
                segment_max_entries=cfg.segment_max_entries,
                segment_max_age=timedelta(hours=cfg.segment_max_age_hours),
                create=self._creating,
            )
            try:
                if trusted is not None:
                    ledger.anchors.check_trusted(trusted, signer.verifier(),
                                                 label=self.trust.label)
            except BaseException:
                ledger.close()
                raise
            self._ledger = ledger
        return self._ledger

    def ledger_for_reading(self) -> tuple[Ledger, str | None]:
        """The ledger for reading it, even when it fails its trust check.

        For investigating a broken log (``audit log``, ``audit export``): returns
        the ledger and the trust check's problem (None when it passes). A ledger
        opened this way refuses nothing, so the caller must show the problem,
        and nothing appended through it is ever sealed or moves the trust state.

        Raises:
            IntegrityError: ``ledger.db`` is missing (there is nothing to read).
        """
        from sealtune.errors import IntegrityError
        from sealtune.ledger.log import Ledger

        try:
            return self.ledger, None
        except IntegrityError as exc:
            if self.ledger_location == str(self.ledger_path) and not self.ledger_path.exists():
                raise
            cfg = self.config.ledger
            self._ledger = Ledger.open(
                self.ledger_location, signer=None, origin=self.origin,
                checkpoint_every=cfg.checkpoint_every,
                segment_max_entries=cfg.segment_max_entries,
                segment_max_age=timedelta(hours=cfg.segment_max_age_hours), create=False)
            self._ledger_unchecked = True
            return self._ledger, exc.message

    def witness_policy(self) -> WitnessPolicy | None:
        """The configured k-of-n witness policy (``[ledger.witnesses]``), or None."""
        from sealtune.ledger.verify_global import WitnessPolicy

        cfg = self.config.ledger.witnesses
        return None if cfg is None else WitnessPolicy.from_keys(
            cfg.k, cfg.keys, max_unwitnessed=cfg.max_unwitnessed)

    @property
    def actor(self) -> str:
        """Who acts: the caller set by :func:`acting_as`, ``$SEALTUNE_ACTOR`` or ``user@host``."""
        explicit = _ACTING_AS.get() or os.environ.get(ENV_ACTOR)
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

    def seal_ledger(self) -> str:
        """Sign everything unsigned and move the trust state forward.

        Returns:
            The newest global checkpoint note (what auditors and witnesses keep).

        Raises:
            IntegrityError: the trust state is missing or the ledger no longer extends it.
        """
        note = self.ledger.seal()
        self.ledger.anchors.advance_trust(self.trust, self.ledger_verifier(),
                                          create=self._creating)
        self._creating = False
        return note

    def close(self) -> None:
        """Seal what this workspace appended (see :meth:`seal_ledger`), close the ledger.

        Raises:
            IntegrityError: the trust state is missing or the ledger no longer extends it.
        """
        for store in (self._meta,):
            if store is not None:
                store.close()
        self._meta = None
        ledger = self._ledger
        if ledger is None:
            return
        try:
            if ledger.appended and not self._ledger_unchecked:
                self.seal_ledger()
        finally:
            ledger.close()
            self._ledger = None
