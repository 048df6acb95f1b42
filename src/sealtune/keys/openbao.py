"""The ``openbao`` keyring: KEKs in an OpenBao (or HashiCorp Vault) transit engine.

Each KEK is a transit key named ``<key_prefix><name>`` at ``mount``, of type
``aes256-gcm96``, created non-exportable and without plaintext backup, so the
key material stays inside the key service. A data key is wrapped by a
transit ``encrypt`` call with the caller's associated data bound in as GCM
AAD (``associated_data``; a wrong or missing aad fails to decrypt); the blob
is the ``vault:v<N>:...`` ciphertext. ``rotate`` adds a transit version;
``retire`` raises ``min_decryption_version``/``min_encryption_version`` and
then trims the older versions so they are really deleted; ``destroy``
allows deletion and deletes the transit key.

Protects against: theft of the host or the workspace (no KEK there); the key
service can live on the customer's side (hold-your-own-key) and revoke
sealtune's access, or destroy the key, at any time; tampering with a wrapped
key or moving it to another file (an opaque ``IntegrityError``).

Does not protect against: the key service's operator, who can decrypt
anything wrapped under its keys; a compromised host that holds the token
(read from the environment variable ``token_env``), which can unwrap while
the token is valid; a token whose policy allows ``create`` on
``<mount>/encrypt/*`` (transit creates a missing key on encrypt; this backend
checks the key exists first, but grant only ``update`` there to close the
race). Workspaces sharing a mount must use distinct ``key_prefix`` values.
A destroyed key cannot be told apart from one that never existed: both are
reported as not found.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sealtune.config import OpenBaoConfig
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

KEY_TYPE = "aes256-gcm96"
TIMEOUT_S = 15
_CIPHERTEXT = re.compile(r"^vault:v(?P<v>[1-9][0-9]*):[A-Za-z0-9+/=]+$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class OpenBaoKeyring:
    """KEKs in one OpenBao / Vault transit mount.

    Args:
        config: server address, mount, namespace, key prefix and token variable.
    """

    backend = "openbao"

    def __init__(self, config: OpenBaoConfig) -> None:
        require_module("hvac", extra="openbao")
        self._cfg = config
        self._token()  # fail early, naming the variable, if it is unset

    # -- transport ---------------------------------------------------------------

    def _token(self) -> str:
        token = os.environ.get(self._cfg.token_env)
        if not token:
            raise BackendUnavailableError(
                f"the OpenBao token variable {self._cfg.token_env} is not set",
                hint=f"export {self._cfg.token_env} with a token allowed to use "
                f"{self._cfg.mount}/keys/*, {self._cfg.mount}/encrypt/* and "
                f"{self._cfg.mount}/decrypt/*",
            )
        return token

    @contextmanager
    def _client(self, what: str) -> Iterator[Any]:
        """A client for one operation (closed afterwards), with transport errors mapped.

        Refusals that depend on the operation (bad ciphertext, missing key) are
        caught by the caller inside the block; anything else that escapes
        becomes a ``KeyringError`` subclass, never a raw ``hvac`` error.
        """
        import hvac
        from hvac import exceptions as hx

        cfg = self._cfg
        client = hvac.Client(
            url=cfg.addr, token=self._token(), timeout=TIMEOUT_S, namespace=cfg.namespace or None
        )
        try:
            yield client
        except OSError:  # requests' ConnectionError and Timeout are OSErrors
            raise BackendUnavailableError(
                f"cannot reach OpenBao at {cfg.addr} ({what})",
                hint="check keyring.openbao.addr and that the server is running",
            ) from None
        except (hx.Forbidden, hx.Unauthorized):
            raise KeyringError(
                f"OpenBao at {cfg.addr} denied {what}: permission denied",
                hint=f"check that the token in {cfg.token_env} is valid and its policy "
                f"allows {cfg.mount}/keys/*, {cfg.mount}/encrypt/* and {cfg.mount}/decrypt/*",
            ) from None
        except (hx.VaultDown, hx.VaultNotInitialized, hx.InternalServerError, hx.BadGateway):
            raise BackendUnavailableError(
                f"OpenBao at {cfg.addr} is sealed or failing ({what})",
                hint="unseal the server or check its logs",
            ) from None
        except hx.InvalidPath as exc:
            if "no handler for route" in str(exc):
                raise BackendUnavailableError(
                    f"no transit engine is mounted at {cfg.mount!r} on {cfg.addr}",
                    hint="enable it ('bao secrets enable -path=<mount> transit') "
                    "or fix keyring.openbao.mount",
                ) from None
            raise KeyringError(f"OpenBao at {cfg.addr} failed {what} (InvalidPath)") from None
        except hx.VaultError as exc:
            # Server messages are not echoed: the caller maps the ones it expects.
            raise KeyringError(
                f"OpenBao at {cfg.addr} failed {what} ({type(exc).__name__})"
            ) from None
        finally:
            client.adapter.close()

    def _kname(self, name: str) -> str:
        return f"{self._cfg.key_prefix}{name}"

    def _read(self, client: Any, name: str) -> dict[str, Any] | None:
        from hvac import exceptions as hx

        try:
            resp = client.secrets.transit.read_key(self._kname(name), mount_point=self._cfg.mount)
        except hx.InvalidPath as exc:
            if "no handler for route" in str(exc):
                raise
            return None
        data: dict[str, Any] = resp["data"]
        return data

    def _require(self, client: Any, name: str) -> dict[str, Any]:
        data = self._read(client, name)
        if data is None:
            raise KeyNotFoundError(
                f"no key openbao:{name} (transit key {self._kname(name)!r} at "
                f"{self._cfg.addr}, mount {self._cfg.mount!r})",
                hint="it may have been destroyed, or the key prefix or mount is wrong",
            )
        return data

    def _info(self, name: str, data: dict[str, Any]) -> KeyInfo:
        floor = int(data.get("min_decryption_version") or 1)
        versions = tuple(sorted(v for v in (int(k) for k in data["keys"]) if v >= floor))
        created = ""
        first = data["keys"].get("1")
        if isinstance(first, int):
            created = datetime.fromtimestamp(first, UTC).isoformat(timespec="seconds")
        details = {
            "addr": self._cfg.addr,
            "mount": self._cfg.mount,
            "transit_key": self._kname(name),
            "type": str(data.get("type", "")),
        }
        if self._cfg.namespace:
            details["namespace"] = self._cfg.namespace
        return KeyInfo(
            name=name,
            backend=self.backend,
            algorithm="aes-256-gcm",
            current=int(data["latest_version"]),
            versions=versions,
            created=created,
            details=details,
        )

    # -- lifecycle ------------------------------------------------------------------

    def create(self, name: str, *, algorithm: Algorithm) -> KeyInfo:
        """Create transit key ``<prefix><name>`` (``aes256-gcm96``, non-exportable).

        Raises:
            KeyringError: ``sm4-gcm`` was asked for (transit has no SM4 keys).
            UsageError: bad name or algorithm, or the transit key exists.
        """
        check_key_name(name)
        if algorithm == "sm4-gcm":
            raise KeyringError(
                "the openbao backend cannot hold sm4-gcm keys: transit has no SM4",
                hint="use aes-256-gcm with openbao, or sm4-gcm with the local backend",
            )
        if algorithm not in ALGORITHMS:
            raise UsageError(
                f"unknown algorithm {algorithm!r}", hint=f"use one of: {', '.join(ALGORITHMS)}"
            )
        with self._client(f"creating key {name!r}") as c:
            # Transit's create is an upsert: check first, never adopt a stranger's key.
            if self._read(c, name) is not None:
                raise UsageError(
                    f"transit key {self._kname(name)!r} already exists at "
                    f"{self._cfg.addr}, mount {self._cfg.mount!r}",
                    hint="choose another name or key_prefix",
                )
            c.secrets.transit.create_key(
                self._kname(name),
                key_type=KEY_TYPE,
                exportable=False,
                allow_plaintext_backup=False,
                mount_point=self._cfg.mount,
            )
            return self._info(name, self._require(c, name))

    def rotate(self, name: str) -> KeyInfo:
        """Add a transit key version and make it current."""
        with self._client(f"rotating key {name!r}") as c:
            self._require(c, name)
            c.secrets.transit.rotate_key(self._kname(name), mount_point=self._cfg.mount)
            return self._info(name, self._require(c, name))

    def retire(self, name: str, *, below: int) -> KeyInfo:
        """Forbid, then trim (delete), the versions of ``name`` lower than ``below``.

        Raises:
            UsageError: ``below`` would retire the current version, or is below 1.
        """
        with self._client(f"retiring versions of key {name!r}") as c:
            data = self._require(c, name)
            current = int(data["latest_version"])
            if not 1 <= below <= current:
                raise UsageError(
                    f"cannot retire versions below {below} of openbao:{name} "
                    f"(current version is {current})",
                    hint="'below' must be between 1 and the current version; rotate first",
                )
            kname, mount = self._kname(name), self._cfg.mount
            # hvac refuses min_encryption_version == min_decryption_version,
            # which the server accepts; post the config directly.
            c.adapter.post(
                f"/v1/{mount}/keys/{kname}/config",
                json={"min_decryption_version": below, "min_encryption_version": below},
            )
            c.secrets.transit.trim_key(kname, min_version=below, mount_point=mount)
            return self._info(name, self._require(c, name))

    def destroy(self, name: str) -> None:
        """Delete the transit key and every version of it."""
        with self._client(f"destroying key {name!r}") as c:
            self._require(c, name)
            kname, mount = self._kname(name), self._cfg.mount
            c.secrets.transit.update_key_configuration(
                kname, deletion_allowed=True, mount_point=mount
            )
            c.secrets.transit.delete_key(kname, mount_point=mount)

    def describe(self, name: str) -> KeyInfo:
        """Describe ``name`` from the transit key's metadata (never key material)."""
        with self._client(f"reading key {name!r}") as c:
            return self._info(name, self._require(c, name))

    def list(self) -> list[KeyInfo]:
        """Describe every transit key under this backend's prefix, sorted by name."""
        from hvac import exceptions as hx

        prefix = self._cfg.key_prefix
        with self._client("listing keys") as c:
            try:
                resp = c.secrets.transit.list_keys(mount_point=self._cfg.mount)
            except hx.InvalidPath as exc:
                if "no handler for route" in str(exc):
                    raise
                return []  # the mount holds no keys at all
            names = sorted(k[len(prefix) :] for k in resp["data"]["keys"] if k.startswith(prefix))
            out = []
            for name in names:
                data = self._read(c, name) if _valid_name(name) else None
                if data is not None:
                    out.append(self._info(name, data))
            return out

    # -- use -------------------------------------------------------------------------------

    def wrap(self, name: str, data_key: bytes, *, aad: bytes) -> WrappedKey:
        """Encrypt ``data_key`` with transit under the latest version, bound to ``aad``."""
        check_data_key(data_key)
        with self._client(f"wrapping under key {name!r}") as c:
            self._require(c, name)  # encrypt would silently create a missing key
            resp = c.secrets.transit.encrypt_data(
                self._kname(name),
                plaintext=_b64(bytes(data_key)),
                associated_data=_b64(aad),
                mount_point=self._cfg.mount,
            )
        ciphertext = str(resp["data"]["ciphertext"])
        m = _CIPHERTEXT.match(ciphertext)
        if m is None:
            raise KeyringError(f"OpenBao at {self._cfg.addr} returned a malformed ciphertext")
        return WrappedKey(
            kek_uri=f"openbao:{name}", version=int(m["v"]), blob=ciphertext.encode("ascii")
        )

    def unwrap(self, wrapped: WrappedKey, *, aad: bytes) -> bytes:
        """Decrypt a wrapped data key with transit.

        Raises:
            KeyNotFoundError: no such key, or a version newer than the key has.
            KeyDestroyedError: that version was retired.
            IntegrityError: the blob does not authenticate (tampered, wrong aad).
        """
        from hvac import exceptions as hx

        if wrapped.backend != self.backend:
            raise UsageError(f"{wrapped.kek_uri} is not an openbao key")
        failed = IntegrityError(
            f"wrapped key for {wrapped.kek_uri} version {wrapped.version} failed authentication"
        )
        try:
            ciphertext = wrapped.blob.decode("ascii")
        except UnicodeDecodeError:
            raise failed from None
        m = _CIPHERTEXT.match(ciphertext)
        if m is None or int(m["v"]) != wrapped.version:
            raise failed
        with self._client(f"unwrapping under key {wrapped.name!r}") as c:
            try:
                resp = c.secrets.transit.decrypt_data(
                    self._kname(wrapped.name),
                    ciphertext=ciphertext,
                    associated_data=_b64(aad),
                    mount_point=self._cfg.mount,
                )
            except hx.InvalidRequest as exc:
                raise self._decrypt_error(wrapped, str(exc), failed) from None
        try:
            return base64.b64decode(resp["data"]["plaintext"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise failed from None

    def _decrypt_error(self, wrapped: WrappedKey, text: str, failed: IntegrityError) -> Exception:
        if "too old" in text:
            return KeyDestroyedError(
                f"version {wrapped.version} of key {wrapped.kek_uri} was retired; "
                "data wrapped under it is unrecoverable"
            )
        if "too new" in text:
            return KeyNotFoundError(f"key {wrapped.kek_uri} has no version {wrapped.version}")
        if "key not found" in text:
            return KeyNotFoundError(
                f"no key {wrapped.kek_uri} (transit key {self._kname(wrapped.name)!r})",
                hint="it may have been destroyed",
            )
        # "message authentication failed", "invalid ciphertext ...": opaque.
        return failed


def _valid_name(name: str) -> bool:
    try:
        check_key_name(name)
    except UsageError:
        return False
    return True


def _factory(ws: Workspace) -> OpenBaoKeyring:
    if ws.config.openbao is None:
        raise BackendUnavailableError(
            f"the openbao keyring is not configured in {ws.config_path}",
            hint="add a [keyring.openbao] section with at least 'addr'",
        )
    return OpenBaoKeyring(ws.config.openbao)


register_keyring("openbao", _factory)
