"""Administration of the server's credentials: API keys and token signing keys.

API keys live in the workspace's ``serve-keys.json``
(:class:`~sealtune.serve.keystore.KeyStore`: printed once, stored as salted
hashes). Token signing keys live in the keyring's ``serve`` section, one
record per key, ``jwt-hs256:<kid>`` (the layout is in
:mod:`sealtune.serve.tokens`). :func:`rotate_token_key` adds a signing key
and makes the old one verify-only; :func:`retire_token_key` deletes a
verify-only key's record (crypto-shredding: tokens it signed can never
verify again; copies of the keyring file in backups still hold it), refusing
the signing key and, without ``force``, a key that stopped signing less than
24 hours ago. Every change is one keyring transaction, so concurrent
processes never make two signing keys, and a ledger event (ids and kids
only, never key material). A running server picks the changes up within 30
seconds. The single ``jwt-hs256`` record of earlier versions is migrated on
first use (it keeps signing, under a new kid).

What this protects against: key material in the ledger or in messages; two
signing keys from racing processes; a retired key verifying tokens again.
What it does not: keep an API key or a token secret once it is returned to
the caller (``sealtune auth`` prints it once), or remove a retired key from
backups of the keyring file.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sealtune.errors import KeyringError, UsageError
from sealtune.keys.keyfile import b64decode
from sealtune.serve.keystore import FILE_NAME, ApiKeyInfo, KeyStore
from sealtune.serve.tokens import (
    JWT_RECORD_PREFIX,
    IssuedToken,
    TokenKey,
    TokenKeySet,
    TokenService,
)

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = [
    "create_api_key",
    "issue_token",
    "open_key_store",
    "retire_token_key",
    "revoke_api_key",
    "rotate_token_key",
    "token_keys",
    "token_service",
]

_JWT_SECTION, _LEGACY_JWT = "serve", "jwt-hs256"


def open_key_store(ws: Workspace) -> KeyStore:
    """The workspace's API-key store (``serve-keys.json`` in the workspace root)."""
    return KeyStore(ws.root / FILE_NAME)


def create_api_key(ws: Workspace, *, role: str, name: str | None = None,
                   rate_per_second: float | None = None,
                   now: datetime | None = None) -> tuple[str, ApiKeyInfo]:
    """Create an API key; returns the key (shown once: only its salted hash is kept) and its info.

    Raises:
        UsageError: an unknown role, a bad name or rate (see :meth:`KeyStore.create`).
    """
    key, info = open_key_store(ws).create(role=role, name=name, rate_per_second=rate_per_second,
                                          now=now or datetime.now(UTC))
    ws.audit("serve.key_created", f"serve-key:{info.key_id}",
             details={"key_id": info.key_id, "role": info.role, "name": info.name})
    return key, info


def revoke_api_key(ws: Workspace, ref: str, *, now: datetime | None = None) -> ApiKeyInfo:
    """Revoke the API key named or numbered ``ref`` and every token issued for it.

    Raises:
        UsageError: no key, or more than one, answers to ``ref``.
    """
    store = open_key_store(ws)
    key_id = store.resolve(ref).key_id
    info = store.revoke(key_id, now=now or datetime.now(UTC))
    ws.audit("serve.key_revoked", f"serve-key:{key_id}", details={"key_id": key_id})
    return info


def issue_token(ws: Workspace, key_id: str, *, ttl: timedelta,
                now: datetime | None = None) -> IssuedToken:
    """Issue a short-lived JWT acting for API key ``key_id`` (its role and rate limit).

    Raises:
        UsageError: no such key, or ``ttl`` beyond the maximum (24 h).
    """
    info = open_key_store(ws).get(key_id)
    if info is None:
        raise UsageError(f"no API key with id {key_id!r}",
                         hint="list keys with 'sealtune auth list-keys'")
    issued = token_service(ws).issue(info, ttl=ttl, now=now or datetime.now(UTC))
    ws.audit("serve.token_issued", f"serve-key:{key_id}",
             details={"key_id": key_id, "jti": issued.jti, "expires": issued.expires})
    return issued


def _key_resource(kid: str) -> str:
    return f"keyring:{_JWT_SECTION}/{_LEGACY_JWT}:{kid}"  # the record jwt-hs256:<kid>


def _reload_token_keys(ws: Workspace) -> TokenKeySet:
    """Re-read the keyring and return its token keys (a running server's loader)."""
    ws.keyfile.reload()
    return TokenKeySet.from_records(ws.keyfile.items(_JWT_SECTION))


def _migrate(section: dict[str, Any], *, now: datetime) -> list[tuple[str, str]]:
    """Turn a legacy ``jwt-hs256`` record into a keyed one; create the first key if none.

    Returns the ledger events to write, as (action, kid).
    """
    ours = [r for n, r in section.items() if n.startswith(JWT_RECORD_PREFIX)]
    signing = any(r.get("superseded") is None for r in ours)
    events = []
    legacy = section.pop(_LEGACY_JWT, None)
    if legacy is not None:  # kept as the signing key, or verify-only if one already signs
        try:
            secret = b64decode(legacy["key"])
        except (KeyError, TypeError):
            raise KeyringError(f"keyring record {_JWT_SECTION}/{_LEGACY_JWT} is malformed") \
                from None
        key = TokenKey(secrets.token_hex(8), secret, now, now if signing else None)
        section[JWT_RECORD_PREFIX + key.kid] = key.record()
        events.append(("serve.jwt_key_migrated", key.kid))
    elif not ours:
        key = TokenKey.generate(now=now)
        section[JWT_RECORD_PREFIX + key.kid] = key.record()
        events.append(("serve.jwt_key_created", key.kid))
    return events


def _edit_token_keys(
    ws: Workspace, change: Callable[[TokenKeySet], TokenKeySet] | None = None,
) -> tuple[TokenKeySet, TokenKeySet]:
    """Migrate, then apply ``change`` to the token keys, in ONE keyring transaction.

    Under the keyring's lock, so concurrent processes never make two signing
    keys. Returns the key sets before and after ``change``.
    """
    ws.keyfile.reload()
    section = ws.keyfile.items(_JWT_SECTION)
    if change is None and _LEGACY_JWT not in section \
            and any(n.startswith(JWT_RECORD_PREFIX) for n in section):
        keys = TokenKeySet.from_records(section)  # nothing to migrate: no write, no lock
        return keys, keys
    with ws.keyfile.transaction() as doc:  # re-read under the lock
        section = doc.setdefault(_JWT_SECTION, {})
        events = _migrate(section, now=datetime.now(UTC))
        before = TokenKeySet.from_records(section)
        after = before if change is None else change(before)
        for name in [n for n in section if n.startswith(JWT_RECORD_PREFIX)]:
            del section[name]  # a retired key's record goes: crypto-shredding
        section.update(after.records())
    for action, kid in events:
        ws.audit(action, _key_resource(kid), details={"kid": kid})
    return before, after


def token_keys(ws: Workspace) -> TokenKeySet:
    """The workspace's token keys, after creating the first or migrating a legacy one if needed."""
    return _edit_token_keys(ws)[1]


def token_service(
    ws: Workspace, *, clock: Callable[[], float] = time.monotonic,
) -> TokenService:
    """The workspace's JWT service, following the token keys in the keyring.

    The first call creates the signing key, or migrates the single
    ``jwt-hs256`` record of earlier versions (it keeps signing, under a new
    kid). The service re-reads the keyring to pick up keys rotated or
    retired by other processes (see :class:`~sealtune.serve.tokens.TokenService`;
    ``clock`` is its monotonic clock, for tests).
    """
    return TokenService(token_keys(ws), issuer=f"sealtune/{ws.config.workspace_id}",
                        loader=lambda: _reload_token_keys(ws), clock=clock)


def rotate_token_key(ws: Workspace, *, now: datetime) -> tuple[str, str]:
    """Make a new signing key; the old one becomes verify-only. Returns (old kid, new kid)."""
    before, after = _edit_token_keys(ws, lambda keys: keys.rotated(now=now))
    old, new = before.signing.kid, after.signing.kid
    ws.audit("serve.jwt_key_rotated", _key_resource(new),
             details={"old_kid": old, "new_kid": new})
    return old, new


def retire_token_key(ws: Workspace, kid: str, *, now: datetime, force: bool = False) -> None:
    """Delete the verify-only key ``kid``: tokens it signed are refused from then on.

    Raises:
        UsageError: see :meth:`~sealtune.serve.tokens.TokenKeySet.retired`.
    """
    _edit_token_keys(ws, lambda keys: keys.retired(kid, now=now, force=force))
    ws.audit("serve.jwt_key_retired", _key_resource(kid),
             details={"kid": kid, "forced": force})
