"""JWT bearer tokens: HS256 token keys, their rotation, and the service that issues and verifies.

* **Tokens** are JWTs issued for an API key (see
  :mod:`~sealtune.serve.keystore`), HS256 with a 256-bit key held in the
  workspace keyring; ``iss``, ``aud``, ``exp``, ``iat``, ``nbf``, ``sub``,
  ``jti`` required, and a ``role`` the key holds; default lifetime 1 hour, at
  most 24. The token header must be exactly ``{"alg": "HS256", "kid": ...,
  "typ"?}`` (``alg: none``, RS/ES/EdDSA and key-carrying headers such as
  ``jwk``/``jku``/``x5u`` are refused), so no algorithm confusion is
  possible. Every bad token is a :class:`~sealtune.serve.auth.Denied` 401
  ``invalid_token`` (``expired_token`` once it expired). Whether its ``jti``
  or its API key is revoked is checked by
  :class:`~sealtune.serve.auth.Authenticator`, not here.
* **Token keys rotate.** A :class:`TokenKeySet` holds one *signing* key
  (the newest) and any number of *verify-only* keys it replaced, each named
  by a ``kid`` (``[A-Za-z0-9_-]{1,40}``) that every token carries in its
  header. ``kid`` is required: a token without one, or naming a key the
  service does not hold (unknown or retired), is ``invalid_token`` like any
  other bad token, and the kid is never echoed. Tokens issued before
  ``kid`` existed are therefore refused; they lived at most 24 hours, so
  callers simply get new ones. Retiring a key deletes it; it is safe once
  the key stopped signing :data:`MAX_TTL` ago, when every token it signed
  has expired. With a ``loader``, :class:`TokenService` picks up keys
  rotated or retired by another process: it reloads when a token names an
  unknown kid (at most once per ``min_reload``, 5 s, so garbage kids cannot
  force reloads) and on the first use ``refresh`` (30 s) after the last
  load, so a retired key verifies for at most 30 s more in a running server.
  A failed reload refuses every token until one succeeds (fail closed).

Token keys in the workspace keyring (section ``serve``), one record per key:
``jwt-hs256:<kid>`` = ``{"key": base64 of 32 random bytes, "created":
ISO 8601 UTC, "superseded": null for the signing key, else the ISO 8601 UTC
time it stopped signing}``. The single record ``jwt-hs256`` = ``{"key":
...}`` of earlier versions is migrated on first use (see
:func:`sealtune.serve.token_admin.token_service`).

What this protects against: forged tokens, re-algorithmed tokens (``alg``
swaps, ``none``, key-carrying headers), expired tokens, tokens naming an
unknown kid or signed by a retired key, and reload floods from garbage
kids. What it does not: a stolen valid token until it expires or is
revoked (revocation is the caller's check); a stolen token key until it is
rotated and retired; a retired key still verifies for up to ``refresh``
seconds in a running server; bearer tokens are readable by whoever
terminates TLS.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from sealtune.core import strict_json
from sealtune.errors import KeyringError, MalformedJSON, UsageError
from sealtune.keys.keyfile import b64decode, b64encode
from sealtune.serve._denied import Denied
from sealtune.serve.keystore import ROLES, ApiKeyInfo

AUDIENCE = "sealtune-serve"
DEFAULT_TTL = timedelta(hours=1)
MAX_TTL = timedelta(hours=24)
#: keyring record names of token keys: ``jwt-hs256:<kid>``.
JWT_RECORD_PREFIX = "jwt-hs256:"
_KID = re.compile(r"[A-Za-z0-9_-]{1,40}")
# The logger of sealtune.serve.auth, where this code lived: log filters and
# alerts on reload failures keep working.
_log = logging.getLogger("sealtune.serve.auth")

__all__ = [
    "AUDIENCE",
    "DEFAULT_TTL",
    "JWT_RECORD_PREFIX",
    "MAX_TTL",
    "IssuedToken",
    "TokenKey",
    "TokenKeySet",
    "TokenService",
    "valid_kid",
]


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued JWT (shown once) and its id and expiry (epoch seconds)."""

    token: str
    jti: str
    expires: int


def valid_kid(kid: object) -> bool:
    """Whether ``kid`` is a well-formed key id (``[A-Za-z0-9_-]{1,40}``)."""
    return isinstance(kid, str) and _KID.fullmatch(kid) is not None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _parse_time(text: Any) -> datetime:
    when = datetime.fromisoformat(text)  # TypeError/ValueError on anything else
    if when.tzinfo is None:
        raise ValueError("naive time")
    return when


@dataclass(frozen=True)
class TokenKey:
    """One HS256 token key.

    Attributes:
        kid: its key id, carried in the header of every token it signs.
        secret: at least 32 random bytes (never printed).
        created: when it was made (UTC).
        superseded: when a newer key replaced it for signing; None while it signs.
    """

    kid: str
    secret: bytes = field(repr=False)
    created: datetime
    superseded: datetime | None = None

    def __post_init__(self) -> None:
        if not valid_kid(self.kid):
            raise UsageError("a JWT key id must be 1-40 characters of A-Z, a-z, 0-9, '_', '-'")
        if len(self.secret) < 32:
            raise UsageError("the JWT signing key must be at least 32 bytes")

    @classmethod
    def generate(cls, *, now: datetime) -> TokenKey:
        """A new signing key: 32 random bytes and a random kid."""
        return cls(secrets.token_hex(8), secrets.token_bytes(32), now)

    @property
    def state(self) -> str:
        """``signing`` or ``verify-only``."""
        return "signing" if self.superseded is None else "verify-only"

    def record(self) -> dict[str, Any]:
        """The keyring record (see the module docstring)."""
        return {"key": b64encode(self.secret), "created": _iso(self.created),
                "superseded": None if self.superseded is None else _iso(self.superseded)}


@dataclass(frozen=True)
class TokenKeySet:
    """The keys of a :class:`TokenService`: exactly one signing key, any verify-only keys.

    Raises:
        UsageError: not exactly one signing key, or a kid used twice.
    """

    keys: tuple[TokenKey, ...]

    def __post_init__(self) -> None:
        signing = [k for k in self.keys if k.superseded is None]
        if len(signing) != 1:
            raise UsageError(f"a JWT key set needs exactly one signing key, not {len(signing)}",
                             hint="run 'sealtune auth rotate-token-key' to make one")
        if len({k.kid for k in self.keys}) != len(self.keys):
            raise UsageError("a JWT key set names one kid twice")

    @classmethod
    def single(cls, secret: bytes, *, now: datetime | None = None) -> TokenKeySet:
        """One signing key with a random kid (for tests and embedded use)."""
        return cls((TokenKey(secrets.token_hex(8), secret, now or datetime.now(UTC)),))

    @classmethod
    def from_records(cls, records: Mapping[str, Any]) -> TokenKeySet:
        """Parse the ``jwt-hs256:<kid>`` records of the keyring's ``serve`` section.

        Other records are ignored.

        Raises:
            KeyringError: a record is malformed, or the set is inconsistent.
        """
        keys = []
        for name, rec in sorted(records.items()):
            if not name.startswith(JWT_RECORD_PREFIX):
                continue
            try:
                sup = rec["superseded"]
                keys.append(TokenKey(name.removeprefix(JWT_RECORD_PREFIX), b64decode(rec["key"]),
                                     _parse_time(rec["created"]),
                                     None if sup is None else _parse_time(sup)))
            except (KeyError, TypeError, ValueError, UsageError):
                raise KeyringError(f"keyring record serve/{name} is malformed") from None
        try:
            return cls(tuple(keys))
        except UsageError as exc:
            raise KeyringError(f"the JWT keys in keyring section serve: {exc.message}",
                               hint=exc.hint) from None

    def records(self) -> dict[str, dict[str, Any]]:
        """Every key as its keyring record, by record name."""
        return {JWT_RECORD_PREFIX + k.kid: k.record() for k in self.keys}

    @property
    def signing(self) -> TokenKey:
        """The key that signs new tokens."""
        return next(k for k in self.keys if k.superseded is None)

    def get(self, kid: str) -> TokenKey | None:
        """The key named ``kid``, or None."""
        return next((k for k in self.keys if k.kid == kid), None)

    def rotated(self, *, now: datetime) -> TokenKeySet:
        """A new signing key; the current one becomes verify-only as of ``now``."""
        old = [k if k.superseded else replace(k, superseded=now) for k in self.keys]
        return TokenKeySet((*old, TokenKey.generate(now=now)))

    def retired(self, kid: str, *, now: datetime, force: bool = False) -> TokenKeySet:
        """The set without the verify-only key ``kid``.

        Raises:
            UsageError: no such key, it is the signing key, or (without
                ``force``) it stopped signing less than :data:`MAX_TTL` ago.
        """
        key = self.get(kid) if valid_kid(kid) else None
        if key is None:
            raise UsageError("no token key with that kid",
                             hint="list them with 'sealtune auth token-keys'")
        if key.superseded is None:
            raise UsageError(f"token key {kid} is the current signing key",
                             hint="run 'sealtune auth rotate-token-key' first, then retire it "
                                  "once the tokens it signed have expired")
        safe = key.superseded + MAX_TTL
        if now < safe and not force:
            raise UsageError(f"token key {kid} stopped signing less than 24 hours ago; tokens it "
                             f"signed may still be valid until {_iso(safe)}",
                             hint="retry after that time, or pass --force to cut them off now")
        return TokenKeySet(tuple(k for k in self.keys if k.kid != kid))


_MAX_TOKEN_HEADER = 1024


def _header_is_plain_json(token: str) -> bool:
    """Whether the (unverified) JOSE header is small, shallow, valid JSON.

    PyJWT parses the header before any signature check, with the standard
    library's recursive parser: a deeply nested header would raise
    ``RecursionError`` (a 500) instead of a 401.
    """
    segment = token.split(".", 1)[0]
    if len(segment) > _MAX_TOKEN_HEADER:
        return False
    try:
        strict_json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (MalformedJSON, ValueError):
        return False
    return True


class TokenService:
    """Issues and verifies HS256 JWTs bound to API keys, signed by rotating keys.

    Args:
        keys: the key set, or one secret of at least 32 random bytes (a
            one-key set with a random kid).
        issuer: ``iss`` (``sealtune/<workspace id>``).
        audience: ``aud``.
        leeway: clock skew tolerated, in seconds.
        loader: returns the current key set (e.g. re-read from the keyring).
            Called when a token names an unknown kid, at most once per
            ``min_reload`` seconds, and on the first use ``refresh`` seconds
            after the last call; so a key retired elsewhere verifies here for
            at most ``refresh`` seconds more. If it raises, every token is
            refused until a later call succeeds (fail closed).
        refresh: seconds between periodic reloads (the retirement bound).
        min_reload: the least seconds between two reloads.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, keys: TokenKeySet | bytes, *, issuer: str, audience: str = AUDIENCE,
                 leeway: float = 5.0, loader: Callable[[], TokenKeySet] | None = None,
                 refresh: float = 30.0, min_reload: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < min_reload <= refresh:
            raise UsageError("token key reloads need 0 < min_reload <= refresh")
        self._keys = keys if isinstance(keys, TokenKeySet) else TokenKeySet.single(keys)
        self.issuer, self.audience, self._leeway = issuer, audience, leeway
        self._loader, self._refresh, self._min_reload = loader, refresh, min_reload
        self._clock, self._lock = clock, threading.Lock()
        self._loaded_at, self._failed = clock(), False

    @property
    def keys(self) -> TokenKeySet:
        """The key set in use now."""
        with self._lock:
            return self._keys

    def _current(self, kid: str | None) -> TokenKey | None:
        """The key named ``kid`` (the signing key for None), reloading when due."""
        with self._lock:
            key = self._keys.signing if kid is None else self._keys.get(kid)
            if self._loader is not None:
                since = self._clock() - self._loaded_at
                if since >= self._refresh or (since >= self._min_reload
                                              and (key is None or self._failed)):
                    self._reload()
                    key = self._keys.signing if kid is None else self._keys.get(kid)
            return None if self._failed else key

    def _reload(self) -> None:
        assert self._loader is not None
        self._loaded_at = self._clock()
        try:
            self._keys, self._failed = self._loader(), False
        except Exception as exc:  # fail closed on anything; class name only
            self._failed = True
            _log.error("reloading the JWT keys failed (%s): bearer tokens are refused until "
                       "a reload succeeds", type(exc).__name__)

    def issue(self, key: ApiKeyInfo, *, ttl: timedelta = DEFAULT_TTL,
              now: datetime) -> IssuedToken:
        """Issue a token for ``key`` (its role, its rate limit bucket), signed by the signing key.

        Raises:
            UsageError: ``ttl`` not in (0, 24 h], or the key is revoked.
            KeyringError: the key set could not be reloaded.
        """
        if not timedelta(0) < ttl <= MAX_TTL:
            raise UsageError("token lifetime must be between 1 second and 24 hours",
                             hint="tokens are short-lived by design; issue a new one instead")
        if key.revoked:
            raise UsageError(f"API key {key.key_id} is revoked")
        signing = self._current(None)
        if signing is None:
            raise KeyringError("the JWT keys could not be reloaded from the keyring")
        iat = int(now.timestamp())
        jti = secrets.token_hex(16)
        exp = iat + int(ttl.total_seconds())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": key.key_id, "role": key.role,
                  "iat": iat, "nbf": iat, "exp": exp, "jti": jti}
        token = jwt.encode(claims, signing.secret, algorithm="HS256",
                           headers={"kid": signing.kid})
        return IssuedToken(token, jti, exp)

    def verify(self, token: str) -> dict[str, Any]:
        """Verify header, signature and claims (against the current time).

        Raises:
            Denied: 401 ``invalid_token`` or ``expired_token``.
        """
        bad = Denied(401, "invalid_token", "the bearer token is not valid")
        if not _header_is_plain_json(token):
            raise bad
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise bad from None
        kid = header.get("kid")
        if header.get("alg") != "HS256" or set(header) - {"alg", "typ", "kid"} \
                or not valid_kid(kid):
            raise bad
        key = self._current(kid)
        if key is None:
            raise bad
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.secret, algorithms=["HS256"], audience=self.audience,
                issuer=self.issuer, leeway=self._leeway,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise Denied(401, "expired_token", "the bearer token expired; get a new one") from None
        except jwt.PyJWTError:
            raise bad from None
        if claims.get("role") not in ROLES or not isinstance(claims.get("jti"), str):
            raise bad
        return claims
