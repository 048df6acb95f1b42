"""The ``pkcs11`` keyring: KEKs generated and used inside a PKCS#11 token (an HSM).

Each KEK version is an AES-256 secret-key object generated on the token
(``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE`` true, ``CKA_EXTRACTABLE``
false, only ``ENCRYPT``/``DECRYPT`` allowed) and labelled
``sealtune/<workspace id>/<name>/v<N>``, so several workspaces can share a
token without seeing each other's keys. Wrapping runs on the token:
``C_Encrypt`` with ``CKM_AES_GCM``, a 96-bit nonce from the host and the
caller's associated data; the blob is ``nonce || ciphertext || tag``. The
versions of a key are whatever objects exist on the token: ``rotate``
generates a new object, ``retire`` and ``destroy`` call ``C_DestroyObject``.
``destroy`` then leaves a data object (no secret) labelled
``.../destroyed`` so the key is reported as destroyed rather than missing.

Protects against: theft of the host's disk or of the workspace (the KEK is
not there, and the token never releases it: it is non-extractable and
sensitive); tampering with a wrapped key or moving it to another file
(GCM authentication with the associated data). Customer-managed keys: whoever
holds the token can withdraw it or destroy the objects.

Does not protect against: a compromised host that has the PIN (taken from
the environment variable named by ``pin_env``); it cannot copy the KEK but
can ask the token to unwrap any data key while it has access. Tokens without
SM4 (SoftHSM2 included) cannot hold ``sm4-gcm`` keys; this backend refuses
them.

Sessions are opened and closed per operation under a process-wide lock (a
PKCS#11 module is process-global state: its login is shared by all sessions,
and re-initialising it, which is how tokens created after start-up become
visible, closes every session).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sealtune.config import Pkcs11Config
from sealtune.errors import (
    BackendUnavailableError,
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    KeyringError,
    UsageError,
)
from sealtune.keys.base import (
    ALGORITHMS,
    Algorithm,
    KeyInfo,
    WrappedKey,
    register_keyring,
    require_module,
)
from sealtune.keys.local import check_data_key
from sealtune.keys.service import check_key_name

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

NONCE_BYTES = 12
TAG_BYTES = 16
_LABEL = re.compile(
    r"^sealtune/(?P<ws>[^/]+)/(?P<name>[^/]+)/(?:v(?P<v>[1-9][0-9]*)|(?P<t>destroyed))$"
)

# One lock for every PKCS#11 module in the process: see the module docstring.
_LOCK = threading.RLock()


class Pkcs11Keyring:
    """KEKs of one workspace on one PKCS#11 token.

    Args:
        config: module path, token label and the name of the PIN variable.
        workspace_id: scopes object labels so workspaces sharing a token are apart.
    """

    backend = "pkcs11"

    def __init__(self, config: Pkcs11Config, *, workspace_id: str) -> None:
        require_module("pkcs11", extra="pkcs11")
        self._cfg = config
        self._scope = f"sealtune/{workspace_id}"

    # -- token access ------------------------------------------------------------

    def _token(self) -> Any:
        import pkcs11
        from pkcs11.exceptions import MultipleTokensReturned, NoSuchToken, PKCS11Error

        cfg = self._cfg
        try:
            lib = pkcs11.lib(cfg.module)
        except PKCS11Error:
            raise BackendUnavailableError(
                f"cannot load the PKCS#11 module {cfg.module}",
                hint="check keyring.pkcs11.module (e.g. /usr/lib/softhsm/libsofthsm2.so)",
            ) from None
        try:
            try:
                return lib.get_token(token_label=cfg.token_label)
            except NoSuchToken:
                # Tokens initialised after the module was loaded appear only
                # after C_Finalize + C_Initialize (safe: no session is open).
                lib.reinitialize()
                return lib.get_token(token_label=cfg.token_label)
        except NoSuchToken:
            raise BackendUnavailableError(
                f"no PKCS#11 token labelled {cfg.token_label!r} in {cfg.module}",
                hint="check keyring.pkcs11.token_label, or initialise the token "
                "(softhsm2-util --init-token ...)",
            ) from None
        except MultipleTokensReturned:
            raise BackendUnavailableError(
                f"several PKCS#11 tokens are labelled {cfg.token_label!r} in {cfg.module}",
                hint="give each token a unique label",
            ) from None

    def _login(self, token: Any, *, rw: bool) -> Any:
        from pkcs11.exceptions import (
            PinIncorrect,
            PinInvalid,
            PinLenRange,
            PinLocked,
            UserAlreadyLoggedIn,
            UserPinNotInitialized,
        )

        cfg = self._cfg
        pin = os.environ.get(cfg.pin_env)
        if not pin:
            raise BackendUnavailableError(
                f"the PKCS#11 PIN variable {cfg.pin_env} is not set",
                hint=f"export {cfg.pin_env} with the user PIN of token {cfg.token_label!r}",
            )
        try:
            return token.open(rw=rw, user_pin=pin)
        except UserAlreadyLoggedIn:
            # Login state is shared by every session of the application.
            return token.open(rw=rw)
        except (PinIncorrect, PinInvalid, PinLenRange):
            raise KeyringError(
                f"login to PKCS#11 token {cfg.token_label!r} failed: "
                f"the PIN in {cfg.pin_env} was refused",
                hint=f"check {cfg.pin_env}; repeated failures can lock the token",
            ) from None
        except PinLocked:
            raise KeyringError(
                f"the user PIN of PKCS#11 token {cfg.token_label!r} is locked",
                hint="the security officer must reset it",
            ) from None
        except UserPinNotInitialized:
            raise BackendUnavailableError(
                f"PKCS#11 token {cfg.token_label!r} has no user PIN set",
                hint="initialise the user PIN (e.g. pkcs11-tool --init-pin)",
            ) from None

    @contextmanager
    def _session(self, *, rw: bool = False) -> Iterator[Any]:
        """Open a logged-in session for one operation; always closed afterwards."""
        from pkcs11.exceptions import PKCS11Error

        with _LOCK:
            try:
                session = self._login(self._token(), rw=rw)
            except PKCS11Error as exc:
                raise BackendUnavailableError(
                    f"cannot open a session on PKCS#11 token {self._cfg.token_label!r} "
                    f"({type(exc).__name__})"
                ) from None
            try:
                yield session
            except PKCS11Error as exc:
                raise KeyringError(
                    f"PKCS#11 token {self._cfg.token_label!r} refused the operation "
                    f"({type(exc).__name__})"
                ) from None
            finally:
                session.close()

    # -- objects --------------------------------------------------------------------

    def _label(self, name: str, version: int) -> str:
        return f"{self._scope}/{name}/v{version}"

    def _objects(self, session: Any) -> Iterator[tuple[str, int | None, Any]]:
        """Yield ``(name, version or None for a tombstone, object)`` in this workspace."""
        from pkcs11 import Attribute, ObjectClass

        ws = self._scope.split("/", 1)[1]
        for cls, part in ((ObjectClass.SECRET_KEY, "v"), (ObjectClass.DATA, "t")):
            # Drain the search before touching objects: one find operation per session.
            for obj in list(session.get_objects({Attribute.CLASS: cls})):
                m = _LABEL.match(str(obj[Attribute.LABEL]))
                if m and m["ws"] == ws and m[part] is not None:
                    yield m["name"], int(m["v"]) if part == "v" else None, obj

    def _find(self, session: Any, label: str) -> Any | None:
        """The secret-key object with exactly ``label``, or None."""
        from pkcs11 import Attribute, ObjectClass

        found = list(
            session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
        )
        return found[0] if len(found) == 1 else None

    def _versions(self, session: Any, name: str) -> tuple[dict[int, Any], Any | None]:
        """The key objects of ``name`` by version, and its tombstone if any."""
        versions: dict[int, Any] = {}
        tombstone = None
        for n, v, obj in self._objects(session):
            if n == name:
                if v is None:
                    tombstone = obj
                else:
                    versions[v] = obj
        return versions, tombstone

    def _live(self, session: Any, name: str) -> dict[int, Any]:
        versions, tombstone = self._versions(session, name)
        if versions:
            return versions
        if tombstone is not None:
            raise KeyDestroyedError(
                f"key pkcs11:{name} was destroyed; data wrapped under it is unrecoverable"
            )
        raise KeyNotFoundError(f"no key pkcs11:{name} on token {self._cfg.token_label!r}")

    def _generate(self, session: Any, name: str, version: int) -> None:
        from pkcs11 import Attribute, KeyType, MechanismFlag

        label = self._label(name, version)
        session.generate_key(
            KeyType.AES,
            256,
            label=label,
            id=hashlib.sha256(label.encode()).digest()[:16],
            store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.MODIFIABLE: False,
            },
        )

    def _info(self, name: str, versions: dict[int, Any], *, destroyed: bool = False) -> KeyInfo:
        return KeyInfo(
            name=name,
            backend=self.backend,
            algorithm="aes-256-gcm",
            current=max(versions, default=0),
            versions=tuple(sorted(versions)),
            state="destroyed" if destroyed else "active",
            details={
                "token": self._cfg.token_label,
                "module": self._cfg.module,
                "label": f"{self._scope}/{name}",
            },
        )

    # -- lifecycle ------------------------------------------------------------------

    def create(self, name: str, *, algorithm: Algorithm) -> KeyInfo:
        """Generate version 1 of KEK ``name`` on the token.

        Raises:
            KeyringError: ``sm4-gcm`` was asked for (no SM4 on PKCS#11 tokens we support).
            UsageError: bad name or algorithm, or the name is taken on this token.
        """
        check_key_name(name)
        if algorithm == "sm4-gcm":
            raise KeyringError(
                "the pkcs11 backend cannot hold sm4-gcm keys: SoftHSM2 and common "
                "PKCS#11 tokens have no SM4 mechanism",
                hint="use algorithm aes-256-gcm with pkcs11, or sm4-gcm with the local backend",
            )
        if algorithm not in ALGORITHMS:
            raise UsageError(
                f"unknown algorithm {algorithm!r}", hint=f"use one of: {', '.join(ALGORITHMS)}"
            )
        with self._session(rw=True) as s:
            versions, tombstone = self._versions(s, name)
            if versions or tombstone is not None:
                raise UsageError(
                    f"a key pkcs11:{name} already exists in this workspace "
                    f"on token {self._cfg.token_label!r}",
                    hint="choose another name",
                )
            self._generate(s, name, 1)
            return self._info(name, self._versions(s, name)[0])

    def rotate(self, name: str) -> KeyInfo:
        """Generate a new version of ``name`` on the token and make it current."""
        with self._session(rw=True) as s:
            versions = self._live(s, name)
            self._generate(s, name, max(versions) + 1)
            return self._info(name, self._live(s, name))

    def retire(self, name: str, *, below: int) -> KeyInfo:
        """Destroy the token objects of the versions of ``name`` lower than ``below``.

        Raises:
            UsageError: ``below`` would retire the current version, or is below 1.
        """
        with self._session(rw=True) as s:
            versions = self._live(s, name)
            current = max(versions)
            if not 1 <= below <= current:
                raise UsageError(
                    f"cannot retire versions below {below} of pkcs11:{name} "
                    f"(current version is {current})",
                    hint="'below' must be between 1 and the current version; rotate first",
                )
            for version in sorted(versions):
                if version < below:
                    versions.pop(version).destroy()
            return self._info(name, versions)

    def destroy(self, name: str) -> None:
        """Destroy every key object of ``name`` on the token, then leave a tombstone."""
        from pkcs11 import Attribute, ObjectClass

        with self._session(rw=True) as s:
            versions = self._live(s, name)
            # Objects first: a crash half-way leaves live versions and no
            # tombstone, never a tombstone that claims a shredding not done.
            for obj in versions.values():
                obj.destroy()
            s.create_object(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.APPLICATION: "sealtune",
                    Attribute.LABEL: f"{self._scope}/{name}/destroyed",
                    Attribute.VALUE: b"destroyed",
                }
            )

    def describe(self, name: str) -> KeyInfo:
        """Describe ``name`` from the objects on the token (no key material is read)."""
        with self._session() as s:
            versions, tombstone = self._versions(s, name)
        if not versions and tombstone is None:
            raise KeyNotFoundError(f"no key pkcs11:{name} on token {self._cfg.token_label!r}")
        return self._info(name, versions, destroyed=not versions)

    def list(self) -> list[KeyInfo]:
        """Describe every key of this workspace on the token, sorted by name."""
        found: dict[str, dict[int, Any]] = {}
        with self._session() as s:
            for name, version, obj in self._objects(s):
                versions = found.setdefault(name, {})
                if version is not None:
                    versions[version] = obj
        return [self._info(n, found[n], destroyed=not found[n]) for n in sorted(found)]

    # -- use -----------------------------------------------------------------------------

    def wrap(self, name: str, data_key: bytes, *, aad: bytes) -> WrappedKey:
        """Encrypt ``data_key`` on the token (AES-GCM) under the current version of ``name``."""
        from pkcs11 import GCMParams, Mechanism
        from pkcs11.exceptions import MechanismInvalid

        check_data_key(data_key)
        nonce = secrets.token_bytes(NONCE_BYTES)
        with self._session() as s:
            versions = self._live(s, name)
            version = max(versions)
            try:
                ct = versions[version].encrypt(
                    bytes(data_key),
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, aad, 128),
                )
            except MechanismInvalid:
                raise BackendUnavailableError(
                    f"PKCS#11 token {self._cfg.token_label!r} does not support CKM_AES_GCM",
                    hint="use a token with AES-GCM (SoftHSM2 >= 2.5 has it)",
                ) from None
        return WrappedKey(kek_uri=f"pkcs11:{name}", version=version, blob=nonce + bytes(ct))

    def unwrap(self, wrapped: WrappedKey, *, aad: bytes) -> bytes:
        """Decrypt a wrapped data key on the token.

        Raises:
            KeyNotFoundError: no such key or version on the token.
            KeyDestroyedError: the key was destroyed or that version retired.
            IntegrityError: the blob does not authenticate (tampered, wrong aad, wrong key).
        """
        from pkcs11 import GCMParams, Mechanism
        from pkcs11.exceptions import (
            DataLenRange,
            EncryptedDataInvalid,
            EncryptedDataLenRange,
            GeneralError,
        )

        if wrapped.backend != self.backend:
            raise UsageError(f"{wrapped.kek_uri} is not a pkcs11 key")
        failed = IntegrityError(
            f"wrapped key for {wrapped.kek_uri} version {wrapped.version} failed authentication"
        )
        blob = wrapped.blob
        with self._session() as s:
            key = self._find(s, self._label(wrapped.name, wrapped.version))
            if key is None:
                versions = self._live(s, wrapped.name)
                if 1 <= wrapped.version < min(versions):
                    raise KeyDestroyedError(
                        f"version {wrapped.version} of key {wrapped.kek_uri} was retired; "
                        "data wrapped under it is unrecoverable"
                    )
                raise KeyNotFoundError(f"key {wrapped.kek_uri} has no version {wrapped.version}")
            if len(blob) < NONCE_BYTES + TAG_BYTES:
                raise failed
            try:
                plain = key.decrypt(
                    blob[NONCE_BYTES:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(blob[:NONCE_BYTES], aad, 128),
                )
            # SoftHSM2 reports a failed GCM tag as CKR_GENERAL_ERROR; other
            # tokens use CKR_ENCRYPTED_DATA_INVALID. All mean "does not authenticate".
            except (GeneralError, EncryptedDataInvalid, EncryptedDataLenRange, DataLenRange):
                raise failed from None
        return bytes(plain)


def _factory(ws: Workspace) -> Pkcs11Keyring:
    if ws.config.pkcs11 is None:
        raise BackendUnavailableError(
            f"the pkcs11 keyring is not configured in {ws.config_path}",
            hint="add a [keyring.pkcs11] section with 'module' and 'token_label'",
        )
    return Pkcs11Keyring(ws.config.pkcs11, workspace_id=ws.config.workspace_id)


register_keyring("pkcs11", _factory)
