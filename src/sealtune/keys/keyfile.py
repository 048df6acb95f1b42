"""The passphrase-sealed keyring file (``keyring.sealed`` in the workspace).

Holds the ``local`` backend's KEKs, the workspace key catalogue (which
backend holds which key name) and the ledger's Ed25519 signing key, as one
JSON document encrypted with AES-256-GCM under a master key derived from the
passphrase with Argon2id. The clear header (KDF parameters, salt, format
version) is the GCM associated data, so editing it fails authentication.

Protects against: reading or editing the keyring file without the
passphrase (a wrong passphrase and a tampered file both fail closed with an
``IntegrityError``, never garbage). Does not protect against: a weak
passphrase (Argon2id only slows guessing), or a process that holds the
unlocked keyring in memory.

Writes are atomic (temp name in the same directory, fsync, rename) and
serialised across processes by an advisory lock, re-reading the file under
the lock so concurrent writers never lose each other's changes.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from sealtune.core import strict_json
from sealtune.errors import ConfigError, IntegrityError, MalformedJSON, WorkspaceError
from sealtune.outputs import write_atomic

FORMAT = "sealtune-keyring/v1"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters (RFC 9106).

    The default follows RFC 9106's second recommended option (64 MiB, t=3,
    p=4). ``unsafe_fast`` is for tests only and is refused below its floor.
    """

    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 4

    @classmethod
    def unsafe_fast(cls) -> KdfParams:
        """Cheap parameters for test suites; never for real keyrings."""
        return cls(memory_kib=8192, iterations=1, lanes=1)

    def problem(self) -> str | None:
        """What is out of bounds (see :data:`KDF_BOUNDS`), or None."""
        for name, (low, high) in KDF_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{name} must be an integer"
            if not low <= value <= high:
                return f"{name} must be in {low}..{high}"
        return None

    def validate(self) -> None:
        """Raise ``ConfigError`` unless every parameter is within :data:`KDF_BOUNDS`."""
        problem = self.problem()
        if problem is not None:
            raise ConfigError(
                f"keyring KDF parameters out of bounds: {problem} (memory 8192..2097152 KiB, "
                "iterations 1..16, lanes 1..16)"
            )


#: Accepted Argon2id parameters, on creation and on every open: the floor keeps
#: guessing costly; the ceiling (RFC 9106's 2 GiB option, 16 passes) keeps an
#: edited header from making the KDF run for hours or exhaust memory before the
#: file's authentication can fail.
KDF_BOUNDS: dict[str, tuple[int, int]] = {
    "memory_kib": (8192, 2 * 1024 * 1024),
    "iterations": (1, 16),
    "lanes": (1, 16),
}
_SALT_BYTES = (8, 64)
_NONCE_BYTES = 12
_TAG_BYTES = 16
_MAX_KEYRING_BYTES = 64 << 20


def _kdf_of(path: Path, header: dict[str, Any]) -> tuple[KdfParams, bytes]:
    """The KDF parameters and salt of a keyring header, checked before any KDF runs.

    Raises:
        IntegrityError: a field is missing, of the wrong type, out of bounds
            (e.g. ``iterations: 1e9``), or the salt is not base64 of 8..64 bytes.
    """
    kdf = header["kdf"]
    params = KdfParams(kdf.get("memory_kib"), kdf.get("iterations"), kdf.get("lanes"))
    problem = params.problem()
    if problem is not None:
        raise IntegrityError(f"keyring file {path}: header field kdf.{problem}",
                             hint="the header was edited or damaged; restore the file from a "
                                  "backup")
    try:
        salt = _unb64(kdf["salt"])
    except (KeyError, TypeError, ValueError):
        salt = b""
    if not _SALT_BYTES[0] <= len(salt) <= _SALT_BYTES[1]:
        raise IntegrityError(f"keyring file {path}: header field kdf.salt is malformed",
                             hint="the header was edited or damaged; restore the file from a "
                                  "backup")
    return params, salt


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError("base64 text expected")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _derive(passphrase: str, salt: bytes, kdf: KdfParams) -> bytes:
    kdf.validate()
    return Argon2id(
        salt=salt,
        length=32,
        iterations=kdf.iterations,
        lanes=kdf.lanes,
        memory_cost=kdf.memory_kib,
    ).derive(passphrase.encode("utf-8"))


def _kdf_id(header: dict[str, Any]) -> str:
    kdf = json.dumps(header["kdf"], sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(b"sealtune-keyring-kdf/v1\0" + kdf).hexdigest()[:32]


class KeyFile:
    """An unlocked keyring file: sections of named JSON records.

    Sections used by sealtune: ``catalogue`` (key name -> backend, algorithm),
    ``local`` (local KEKs and their versions), ``ledger`` (signing key).
    Values must be JSON-serialisable; binary secrets are stored base64.
    """

    def __init__(
        self, path: Path, master_key: bytes, header: dict[str, Any], doc: dict[str, dict[str, Any]]
    ) -> None:
        self._path = path
        self._key = master_key
        self._header = header
        self._doc = doc

    # -- creation and opening -------------------------------------------------

    @classmethod
    def create(cls, path: Path, passphrase: str, *, kdf: KdfParams | None = None) -> KeyFile:
        """Create a new, empty keyring file; refuses to overwrite one."""
        if not passphrase:
            raise ConfigError("the keyring passphrase is empty", hint="set SEALTUNE_PASSPHRASE")
        if path.exists():
            raise WorkspaceError(f"{path} already exists; refusing to overwrite a keyring")
        kdf = kdf or KdfParams()
        salt = secrets.token_bytes(16)
        header = {
            "format": FORMAT,
            "kdf": {
                "name": "argon2id",
                "salt": _b64(salt),
                "memory_kib": kdf.memory_kib,
                "iterations": kdf.iterations,
                "lanes": kdf.lanes,
            },
        }
        kf = cls(path, _derive(passphrase, salt, kdf), header, {})
        kf._save()
        return kf

    @classmethod
    def open(cls, path: Path, passphrase: str) -> KeyFile:
        """Unlock an existing keyring file.

        The header is checked before the KDF runs: its fields, their types and
        the KDF parameters' bounds (:data:`KDF_BOUNDS`).

        Raises:
            WorkspaceError: the file does not exist.
            ConfigError: the file is a keyring of another format or KDF.
            IntegrityError: malformed or edited header, wrong passphrase, or
                tampered file.
        """
        header, nonce, ct = cls._read(path)
        params, salt = _kdf_of(path, header)
        key = _derive(passphrase, salt, params)
        doc = cls._decrypt(path, key, header, nonce, ct)
        return cls(path, key, header, doc)

    @classmethod
    def open_with_key(cls, path: Path, key_for: Callable[[str], bytes | None]) -> KeyFile | None:
        """Unlock with an already-derived master key (``sealtune unlock``'s cache).

        ``key_for`` is given the file's :attr:`kdf_id` (its salt and KDF
        parameters) and returns the key derived for exactly those, or None;
        so a key cached before the passphrase changed is never even tried.

        Returns:
            The unlocked file, or None when ``key_for`` has no key for it.

        Raises:
            WorkspaceError, ConfigError: as :meth:`open`.
            IntegrityError: the key does not open the file (stale key or tampering).
        """
        header, nonce, ct = cls._read(path)
        key = key_for(_kdf_id(header))
        if key is None:
            return None
        if len(key) != 32:  # not a key this file could have: fail as a wrong key does
            raise IntegrityError(f"cannot unlock keyring {path} with the cached key")
        return cls(path, key, header, cls._decrypt(path, key, header, nonce, ct))

    @property
    def kdf_id(self) -> str:
        """A digest of this file's KDF salt and parameters: what its master key was derived for."""
        return _kdf_id(self._header)

    def master_key(self) -> bytes:
        """The derived master key, for the ``sealtune unlock`` cache only: never log or store it."""
        return self._key

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, Any], bytes, bytes]:
        malformed = IntegrityError(f"keyring file {path} is malformed or was tampered with",
                                   hint="restore it from a backup")
        try:
            with path.open("rb") as fh:
                data = fh.read(_MAX_KEYRING_BYTES + 1)
        except FileNotFoundError:
            raise WorkspaceError(
                f"keyring file {path} not found", hint="run 'sealtune init' first"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"{path} is not a readable sealtune keyring ({exc.strerror or type(exc).__name__})"
            ) from None
        try:
            if len(data) > _MAX_KEYRING_BYTES:
                raise malformed
            raw = strict_json.loads(data)
            header = raw["header"]
            if not isinstance(header, dict) or not isinstance(header.get("kdf"), dict):
                raise malformed
            fmt, name = header.get("format"), header["kdf"].get("name")
            if not isinstance(fmt, str) or not isinstance(name, str):
                raise malformed
            if fmt != FORMAT or name != "argon2id":
                raise ConfigError(f"{path}: unsupported keyring format or KDF",
                                  hint=f"this sealtune reads {FORMAT} with argon2id")
            nonce, ct = _unb64(raw["nonce"]), _unb64(raw["ciphertext"])
        except (MalformedJSON, KeyError, TypeError, ValueError):
            raise malformed from None
        if len(nonce) != _NONCE_BYTES or len(ct) < _TAG_BYTES:
            raise malformed
        return header, nonce, ct

    @staticmethod
    def _aad(header: dict[str, Any]) -> bytes:
        return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def _decrypt(
        cls, path: Path, key: bytes, header: dict[str, Any], nonce: bytes, ct: bytes
    ) -> dict[str, dict[str, Any]]:
        try:
            plain = AESGCM(key).decrypt(nonce, ct, cls._aad(header))
        except InvalidTag:
            raise IntegrityError(
                f"cannot unlock keyring {path}: wrong passphrase or the file was tampered with",
                hint="check SEALTUNE_PASSPHRASE",
            ) from None
        doc: dict[str, dict[str, Any]] = json.loads(plain)
        return doc

    def _save(self) -> None:
        nonce = secrets.token_bytes(12)
        plain = json.dumps(self._doc, sort_keys=True).encode("utf-8")
        ct = AESGCM(self._key).encrypt(nonce, plain, self._aad(self._header))
        body = {"header": self._header, "nonce": _b64(nonce), "ciphertext": _b64(ct)}
        write_atomic(self._path, json.dumps(body, indent=1).encode("utf-8"))

    # -- locking ------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self._path.with_name(self._path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            header, nonce, ct = self._read(self._path)
            if header != self._header:
                raise IntegrityError(f"keyring file {self._path} header changed while open")
            self._doc = self._decrypt(self._path, self._key, header, nonce, ct)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- records ---------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the file (picks up other processes' changes)."""
        with self._locked():
            pass

    def get(self, section: str, name: str) -> dict[str, Any] | None:
        """Return the record ``name`` in ``section``, or None."""
        rec = self._doc.get(section, {}).get(name)
        return None if rec is None else dict(rec)

    def items(self, section: str) -> dict[str, dict[str, Any]]:
        """Return a copy of every record in ``section``."""
        return {k: dict(v) for k, v in self._doc.get(section, {}).items()}

    @contextmanager
    def transaction(self) -> Iterator[dict[str, dict[str, Any]]]:
        """Lock, re-read, let the caller edit the document, then save atomically.

        The caller mutates the yielded dict of sections; nothing is written if
        the body raises.
        """
        with self._locked():
            work = json.loads(json.dumps(self._doc))
            yield work
            self._doc = work
            self._save()

    def put(self, section: str, name: str, record: dict[str, Any]) -> None:
        """Insert or replace one record (atomic, under the lock)."""
        with self.transaction() as doc:
            doc.setdefault(section, {})[name] = record

    def delete(self, section: str, name: str) -> None:
        """Remove one record if present (atomic, under the lock)."""
        with self.transaction() as doc:
            doc.get(section, {}).pop(name, None)


def b64encode(data: bytes) -> str:
    """Base64 for secrets stored in keyring records."""
    return _b64(data)


def b64decode(text: str) -> bytes:
    """Inverse of :func:`b64encode`; raises ``IntegrityError`` on garbage."""
    try:
        return _unb64(text)
    except ValueError:
        raise IntegrityError("keyring record holds malformed base64") from None
