"""API keys and token revocations of the server, in the workspace file ``serve-keys.json``.

An API key is ``sealtune_<id>_<secret>``: a 16-hex-digit public id and 256
random bits, shown once when created. The file keeps the id, name, role,
times and ``HMAC-SHA256(salt, secret)`` with a per-key 16-byte salt; never
the secret. A fast keyed hash is enough because the secret is a uniformly
random 256-bit value (nothing to guess, unlike a password), and it keeps
authentication cheap on every request; comparison is constant-time. The
same file holds the ``jti`` of revoked JWTs until they expire.

Writes are atomic (temp file, fsync, rename) under an advisory lock, with a
re-read under the lock, so the CLI and a running server can both change it;
the server re-reads it when its size, inode or modification time change.

What this protects against: reading the file yields no usable key; a revoked
key or token stops working within one request of the change. What it does
not: someone who can write the file can add keys (keep the workspace
``0700``); a key sent over plain HTTP can be captured (put TLS in front).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sealtune.errors import ConfigError, UsageError
from sealtune.outputs import write_atomic

FORMAT = "sealtune-serve-keys/v1"
FILE_NAME = "serve-keys.json"
KEY_PREFIX = "sealtune"
ROLES: tuple[str, ...] = ("admin", "operator", "auditor", "consumer")
_ID = re.compile(r"^[0-9a-f]{16}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")


@dataclass(frozen=True)
class ApiKeyInfo:
    """One API key's public record (no secret, no hash).

    Attributes:
        key_id: the public id (16 hex digits).
        name: a label for people.
        role: ``admin``, ``operator``, ``auditor`` or ``consumer``.
        created: ISO 8601 UTC.
        revoked: ISO 8601 UTC, or None while active.
        rate_per_second: this key's rate limit, or None for the server default.
    """

    key_id: str
    name: str
    role: str
    created: str
    revoked: str | None = None
    rate_per_second: float | None = None


def _hash(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).digest()


def _iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds")


def parse_key(presented: str) -> tuple[str, str] | None:
    """Split ``sealtune_<id>_<secret>``; None if it is not shaped like an API key."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not _ID.match(parts[1]) or len(parts[2]) < 32:
        return None
    return parts[1], parts[2]


class KeyStore:
    """The ``serve-keys.json`` file of a workspace.

    Args:
        path: the file (created on the first write, mode 0600).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._doc: dict[str, Any] = {"format": FORMAT, "keys": {}, "revoked_tokens": {}}

    # -- reading -------------------------------------------------------------------

    def _current(self) -> dict[str, Any]:
        """The document, re-read if the file changed since the last read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._doc
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            with self._lock:
                self._doc = self._read()
                self._stamp = stamp
        return self._doc

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {"format": FORMAT, "keys": {}, "revoked_tokens": {}}
        except (OSError, ValueError):
            raise ConfigError(f"{self.path} is unreadable or not valid JSON",
                              hint="restore it from a backup, or move it away and create new "
                                   "keys") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ConfigError(f"{self.path} is not a {FORMAT} file")
        doc.setdefault("keys", {})
        doc.setdefault("revoked_tokens", {})
        return doc

    def get(self, key_id: str) -> ApiKeyInfo | None:
        """The record of ``key_id``, or None."""
        rec = self._current()["keys"].get(key_id)
        return None if rec is None else _info(key_id, rec)

    def list(self) -> list[ApiKeyInfo]:
        """Every key, active and revoked, oldest first."""
        keys = self._current()["keys"]
        return sorted((_info(k, v) for k, v in keys.items()), key=lambda i: (i.created, i.key_id))

    def resolve(self, ref: str) -> ApiKeyInfo:
        """The key ``ref`` names: its id, or the name of one key.

        A name shared by several keys names the active one (names can be
        reused after a revocation); a name or id that fits more than one key
        is refused, never guessed.

        Raises:
            UsageError: no key, or several keys (their ids listed), fit ``ref``.
        """
        keys = self.list()
        by_id = [i for i in keys if i.key_id == ref]
        named = [i for i in keys if i.name == ref and i.key_id != ref]
        matches = by_id + ([i for i in named if i.revoked is None] or named)
        if not matches:
            raise UsageError(f"no API key with id or name {ref!r}",
                             hint="list keys with 'sealtune auth list-keys'")
        if len(matches) > 1:
            ids = ", ".join(i.key_id for i in matches)
            raise UsageError(f"{ref!r} fits {len(matches)} API keys: {ids}",
                             hint="give the key id")
        return matches[0]

    def verify(self, presented: str) -> tuple[ApiKeyInfo | None, str]:
        """Check a presented API key.

        Returns:
            ``(info, "ok")`` for a valid active key; otherwise ``(info or None,
            reason)`` with reason ``malformed_key``, ``unknown_key``,
            ``bad_secret`` or ``revoked_key``.
        """
        parsed = parse_key(presented)
        if parsed is None:
            return None, "malformed_key"
        key_id, secret = parsed
        rec = self._current()["keys"].get(key_id)
        if rec is None:
            return None, "unknown_key"
        good = hmac.compare_digest(_hash(bytes.fromhex(rec["salt"]), secret),
                                   bytes.fromhex(rec["hash"]))
        info = _info(key_id, rec)
        if not good:
            return info, "bad_secret"
        return info, ("revoked_key" if info.revoked else "ok")

    def token_revoked(self, jti: str) -> bool:
        """Whether the JWT id ``jti`` was revoked."""
        return jti in self._current()["revoked_tokens"]

    # -- writing -------------------------------------------------------------------

    @contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            doc = self._read()
            yield doc
            write_atomic(self.path, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8"))
        finally:
            os.close(fd)
        with self._lock:
            self._stamp = None

    def create(self, *, role: str, name: str | None = None, rate_per_second: float | None = None,
               now: datetime) -> tuple[str, ApiKeyInfo]:
        """Create a key; return ``(the key, its record)``. The key is never shown again.

        Raises:
            UsageError: unknown role, bad name or rate.
        """
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
        if name is not None and not _NAME.match(name):
            raise UsageError("invalid key name", hint="1-64 letters, digits, space, '.', '_', "
                                                      "'@' or '-'")
        if rate_per_second is not None and not 0 < rate_per_second <= 1e6:
            raise UsageError("the rate limit must be a positive number of requests per second")
        key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), os.urandom(16)
        record: dict[str, Any] = {"name": name or key_id, "role": role, "created": _iso(now),
                                  "revoked": None, "rate_per_second": rate_per_second,
                                  "salt": salt.hex(), "hash": _hash(salt, secret).hex()}
        with self._edit() as doc:
            doc["keys"][key_id] = record
        return f"{KEY_PREFIX}_{key_id}_{secret}", _info(key_id, record)

    def revoke(self, key_id: str, *, now: datetime) -> ApiKeyInfo:
        """Revoke a key (and with it every token issued for it).

        Raises:
            UsageError: no such key.
        """
        with self._edit() as doc:
            rec = doc["keys"].get(key_id)
            if rec is None:
                raise UsageError(f"no API key with id {key_id!r}",
                                 hint="list keys with 'sealtune auth list-keys'")
            rec["revoked"] = rec["revoked"] or _iso(now)
        return _info(key_id, rec)

    def revoke_token(self, jti: str, *, expires: float, now: float) -> None:
        """Add a JWT id to the revocation list (entries are dropped once expired)."""
        with self._edit() as doc:
            revoked = doc["revoked_tokens"]
            for old in [j for j, exp in revoked.items() if exp < now]:
                del revoked[old]
            revoked[jti] = expires


def _info(key_id: str, rec: dict[str, Any]) -> ApiKeyInfo:
    rate = rec.get("rate_per_second")
    return ApiKeyInfo(key_id=key_id, name=str(rec["name"]), role=str(rec["role"]),
                      created=str(rec["created"]), revoked=rec.get("revoked"),
                      rate_per_second=None if rate is None else float(rate))


def public_record(info: ApiKeyInfo) -> dict[str, Any]:
    """A JSON-ready record for listings (no secret exists to leave out)."""
    return asdict(info)
