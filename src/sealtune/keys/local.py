"""The ``local`` keyring: KEKs kept in the workspace's passphrase-sealed keyring file.

Each KEK version is a random key (32 bytes for ``aes-256-gcm`` KEKs, 16 bytes
for ``sm4-gcm`` KEKs) stored base64 in section ``local`` of the keyring file,
which is itself encrypted under a master key derived from the passphrase
(see :mod:`sealtune.keys.keyfile`). A data key is wrapped with AES-256-GCM
(or SM4-GCM) under the current version, a random 96-bit nonce and the
caller's associated data; the blob is ``nonce || ciphertext || tag``.

Protects against: someone who copies sealed files, or the keyring file,
without the passphrase; a wrapped key moved to another file (the associated
data no longer matches); tampering with a wrapped key (opaque
``IntegrityError``). ``retire`` and ``destroy`` remove the version keys from
the keyring file and keep a tombstone in it, so a destroyed key is reported
as destroyed, not missing; they also append a tombstone to
``key-tombstones.jsonl`` beside it (:mod:`sealtune.keys.tombstones`), which
this keyring applies on every read, so an older copy of the keyring file
restored from a backup cannot bring a removed key back.

Does not protect against: a compromised host, since the KEKs live on the
same machine as the data and anyone with the passphrase (or a process that
holds the unlocked keyring) can unwrap; nor against old copies of the
keyring file (backups, snapshots) made before a retire or destroy, used
together with an old copy of the tombstone file (or elsewhere): a file on
the host cannot shred. Use ``pkcs11`` or ``openbao`` to keep the KEK off the
host and really destroy it.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealtune.errors import (
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    UsageError,
)
from sealtune.keys.base import ALGORITHMS, Algorithm, KeyInfo, WrappedKey, register_keyring
from sealtune.keys.keyfile import KeyFile, b64decode, b64encode
from sealtune.keys.service import check_key_name
from sealtune.keys.tombstones import TOMBSTONES, bury, stone_for

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

SECTION = "local"
NONCE_BYTES = 12
TAG_BYTES = 16
#: KEK length in bytes per algorithm.
KEK_BYTES: dict[str, int] = {"aes-256-gcm": 32, "sm4-gcm": 16}
#: Largest data key accepted for wrapping (data keys are 16 or 32 bytes).
MAX_DATA_KEY_BYTES = 64


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _seal(algorithm: str, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    if algorithm == "aes-256-gcm":
        return AESGCM(key).encrypt(nonce, data, aad)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    return enc.update(data) + enc.finalize() + enc.tag


def _open(algorithm: str, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Decrypt ``sealed`` (ciphertext || tag); raises ``InvalidTag`` on any mismatch."""
    if algorithm == "aes-256-gcm":
        return AESGCM(key).decrypt(nonce, sealed, aad)
    ct, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    return dec.update(ct) + dec.finalize()


def check_data_key(data_key: bytes) -> None:
    """Refuse data keys that are empty or implausibly long (a caller bug, not data)."""
    if not isinstance(data_key, bytes | bytearray) or not 1 <= len(data_key) <= MAX_DATA_KEY_BYTES:
        raise UsageError(f"a data key must be 1 to {MAX_DATA_KEY_BYTES} bytes")


class LocalKeyring:
    """KEKs in the passphrase-sealed keyring file of one workspace.

    Args:
        keyfile: the workspace's unlocked keyring file.
    """

    backend = "local"

    def __init__(self, keyfile: KeyFile, *, tombstones: Path | None = None) -> None:
        self._kf = keyfile
        self._tombstones = tombstones

    def _buried(self, name: str, rec: dict[str, Any]) -> dict[str, Any]:
        """``rec`` as its tombstone leaves it: a restored keyring file resurrects nothing."""
        stone = stone_for(self._tombstones, name, str(rec.get("created", "")))
        if stone.destroyed and rec["state"] != "destroyed":
            return {**rec, "state": "destroyed", "keys": {}, "resurrected": True}
        if stone.below:
            return {**rec, "retired_below": stone.below,
                    "keys": {v: k for v, k in rec["keys"].items() if int(v) >= stone.below}}
        return rec

    def _destroyed_error(self, name: str, rec: dict[str, Any]) -> KeyDestroyedError:
        message = f"key {self._uri(name)} was destroyed; data wrapped under it is unrecoverable"
        if rec.get("resurrected"):
            message += (" (the keyring file holds it again, as if restored from a backup: "
                        f"its tombstone in {TOMBSTONES} refuses it)")
        return KeyDestroyedError(message)

    # -- helpers -----------------------------------------------------------------

    def _uri(self, name: str) -> str:
        return f"{self.backend}:{name}"

    def _record(self, name: str) -> dict[str, Any]:
        rec = self._kf.get(SECTION, name)
        if rec is None:
            raise KeyNotFoundError(
                f"no local key named {name!r}", hint="list keys with 'sealtune keys list'"
            )
        return self._buried(name, rec)

    def _live(self, doc: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        """The record to change inside a transaction; tombstoned versions are dropped from it."""
        rec: dict[str, Any] | None = doc.get(SECTION, {}).get(name)
        if rec is None:
            raise KeyNotFoundError(f"no local key named {name!r}")
        buried = self._buried(name, rec)
        if buried["state"] == "destroyed":
            raise self._destroyed_error(name, buried)
        rec["keys"] = buried["keys"]  # heals a restored file when the transaction saves
        return rec

    def _info(self, name: str, rec: dict[str, Any]) -> KeyInfo:
        destroyed = rec["state"] == "destroyed"
        return KeyInfo(
            name=name,
            backend=self.backend,
            algorithm=rec["algorithm"],
            current=0 if destroyed else int(rec["current"]),
            versions=tuple(sorted(int(v) for v in rec["keys"])),
            state="destroyed" if destroyed else "active",
            created=rec["created"],
            details={"store": "keyring file"},
        )

    # -- lifecycle -----------------------------------------------------------------

    def create(self, name: str, *, algorithm: Algorithm) -> KeyInfo:
        """Create KEK ``name`` at version 1 with a fresh random key.

        Raises:
            UsageError: bad name or algorithm, or the name exists (or was destroyed).
        """
        check_key_name(name)
        if algorithm not in ALGORITHMS:
            raise UsageError(
                f"unknown algorithm {algorithm!r}", hint=f"use one of: {', '.join(ALGORITHMS)}"
            )
        with self._kf.transaction() as doc:
            section = doc.setdefault(SECTION, {})
            if name in section:
                raise UsageError(
                    f"a local key named {name!r} already exists (state: {section[name]['state']})",
                    hint="choose another name",
                )
            rec = {
                "algorithm": algorithm,
                "created": _now(),
                "current": 1,
                "state": "active",
                "keys": {"1": b64encode(secrets.token_bytes(KEK_BYTES[algorithm]))},
            }
            section[name] = rec
        return self._info(name, rec)

    def rotate(self, name: str) -> KeyInfo:
        """Add a new random version of ``name`` and make it current."""
        with self._kf.transaction() as doc:
            rec = self._live(doc, name)
            new = int(rec["current"]) + 1
            rec["keys"][str(new)] = b64encode(secrets.token_bytes(KEK_BYTES[rec["algorithm"]]))
            rec["current"] = new
        return self._info(name, rec)

    def retire(self, name: str, *, below: int) -> KeyInfo:
        """Delete the versions of ``name`` lower than ``below`` from the keyring file.

        Raises:
            UsageError: ``below`` would retire the current version, or is below 1.
        """
        with self._kf.transaction() as doc:
            rec = self._live(doc, name)
            if not 1 <= below <= int(rec["current"]):
                raise UsageError(
                    f"cannot retire versions below {below} of {self._uri(name)} "
                    f"(current version is {rec['current']})",
                    hint="'below' must be between 1 and the current version; rotate first",
                )
            # The tombstone first: a crash between the two leaves the versions refused.
            if self._tombstones is not None:
                bury(self._tombstones, name=name, created=str(rec["created"]), below=below)
            rec["keys"] = {v: k for v, k in rec["keys"].items() if int(v) >= below}
        return self._info(name, rec)

    def destroy(self, name: str) -> None:
        """Delete every version of ``name`` from the keyring file, leaving a tombstone."""
        with self._kf.transaction() as doc:
            rec = self._live(doc, name)
            if self._tombstones is not None:  # first, as in retire
                bury(self._tombstones, name=name, created=str(rec["created"]), destroyed=True)
            rec["keys"] = {}
            rec["state"] = "destroyed"
            rec["destroyed"] = _now()

    def describe(self, name: str) -> KeyInfo:
        """Describe KEK ``name`` (versions, state); never returns key material."""
        self._kf.reload()
        return self._info(name, self._record(name))

    def list(self) -> list[KeyInfo]:
        """Describe every local KEK, destroyed ones included, sorted by name."""
        self._kf.reload()
        return [self._info(n, self._buried(n, r))
                for n, r in sorted(self._kf.items(SECTION).items())]

    # -- use ---------------------------------------------------------------------------

    def wrap(self, name: str, data_key: bytes, *, aad: bytes) -> WrappedKey:
        """Encrypt ``data_key`` under the current version of ``name``, bound to ``aad``."""
        check_data_key(data_key)
        self._kf.reload()  # see rotations and destructions made by other processes
        rec = self._record(name)
        if rec["state"] == "destroyed":
            raise self._destroyed_error(name, rec)
        version = int(rec["current"])
        if str(version) not in rec["keys"]:  # a restored keyring whose current was retired
            raise KeyDestroyedError(f"version {version} of key {self._uri(name)} was retired",
                                    hint=f"rotate it: 'sealtune keys rotate {name}'")
        kek = b64decode(rec["keys"][str(version)])
        nonce = secrets.token_bytes(NONCE_BYTES)
        blob = nonce + _seal(rec["algorithm"], kek, nonce, bytes(data_key), aad)
        return WrappedKey(kek_uri=self._uri(name), version=version, blob=blob)

    def unwrap(self, wrapped: WrappedKey, *, aad: bytes) -> bytes:
        """Decrypt a data key wrapped by :meth:`wrap`.

        Raises:
            KeyNotFoundError: no such key or version.
            KeyDestroyedError: the key or that version was destroyed or retired.
            IntegrityError: the blob does not authenticate (tampered, wrong aad).
        """
        if wrapped.backend != self.backend:
            raise UsageError(f"{wrapped.kek_uri} is not a local key")
        self._kf.reload()
        rec = self._record(wrapped.name)
        if rec["state"] == "destroyed":
            raise self._destroyed_error(wrapped.name, rec)
        keys: dict[str, str] = rec["keys"]
        held = sorted(int(v) for v in keys)
        if str(wrapped.version) not in keys:
            floor = max(held[0] if held else 0, int(rec.get("retired_below", 0)))
            if 1 <= wrapped.version < floor:
                raise KeyDestroyedError(
                    f"version {wrapped.version} of key {wrapped.kek_uri} was retired; "
                    "data wrapped under it is unrecoverable"
                )
            raise KeyNotFoundError(f"key {wrapped.kek_uri} has no version {wrapped.version}")
        blob = wrapped.blob
        failed = IntegrityError(
            f"wrapped key for {wrapped.kek_uri} version {wrapped.version} failed authentication"
        )
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise failed
        kek = b64decode(keys[str(wrapped.version)])
        try:
            return _open(rec["algorithm"], kek, blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise failed from None


def _factory(ws: Workspace) -> LocalKeyring:
    return LocalKeyring(ws.keyfile, tombstones=ws.root / TOMBSTONES)


register_keyring("local", _factory)
