"""Who may call the server: API keys and bearer tokens, roles on every route, rate limits.

* **Credentials** arrive as ``Authorization: Bearer <credential>``: an API
  key (``sealtune_<id>_<secret>``, see :mod:`~sealtune.serve.keystore`) or a
  JWT issued for one (signing keys, their rotation and every check on the
  token itself are in :mod:`~sealtune.serve.tokens`). A token stops working
  when its ``jti`` is revoked or its API key is, or when the key's role no
  longer matches the token's.
* **Roles** ``admin``, ``operator``, ``auditor``, ``consumer``:
  :data:`ROUTE_ROLES` names the roles of EVERY route (``PUBLIC`` for the
  attestation report and the health check, which clients need before they
  hold credentials); a route missing from it is denied, and
  :func:`check_route_matrix` refuses to build an app with such a route.
* **Rate limits**: a token bucket per API key (tokens share their key's
  bucket), and per client address for anonymous calls; over the limit is 429
  with ``Retry-After``.

Every denial is a :class:`Denied` carrying a reason code, which the app
turns into a 401/403/429 response and a ``serve.denied`` ledger event (the
key id or ``anonymous``, the route and the reason; never the credential).
The token names (:class:`TokenService`, :class:`TokenKeySet`, ...) are
re-exported here, so ``sealtune.serve.auth`` stays the one import for callers.

What this protects against: unauthenticated or over-privileged calls,
tokens whose ``jti`` or API key was revoked (forged, expired,
re-algorithmed tokens and retired keys: see :mod:`~sealtune.serve.tokens`),
and one caller starving the others. What it does not: a stolen valid
credential until it is revoked or expires; bearer credentials are readable
by whoever terminates TLS (end-to-end encryption protects prompts, not
credentials); per-address limits do not stop a distributed flood.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from sealtune.errors import UsageError
from sealtune.serve._denied import ANONYMOUS, Denied
from sealtune.serve.keystore import ROLES, KeyStore
from sealtune.serve.tokens import (
    AUDIENCE,
    DEFAULT_TTL,
    JWT_RECORD_PREFIX,
    MAX_TTL,
    IssuedToken,
    TokenKey,
    TokenKeySet,
    TokenService,
    valid_kid,
)

__all__ = [
    "ANONYMOUS",
    "AUDIENCE",
    "DEFAULT_TTL",
    "JWT_RECORD_PREFIX",
    "MAX_TTL",
    "PUBLIC",
    "ROUTE_ROLES",
    "Authenticator",
    "Denied",
    "IssuedToken",
    "Principal",
    "RateLimit",
    "RateLimiter",
    "TokenKey",
    "TokenKeySet",
    "TokenService",
    "check_route_matrix",
    "valid_kid",
]

PUBLIC: frozenset[str] = frozenset({"<public>"})
_ALL = frozenset(ROLES)

#: (method, route path) -> the roles allowed; PUBLIC needs no credential.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/v1/attestation"): PUBLIC,
    ("GET", "/v1/models"): _ALL,
    ("POST", "/v1/chat/completions"): frozenset({"consumer", "operator", "admin"}),
    ("POST", "/v1/admin/rotate-key"): frozenset({"operator", "admin"}),
    ("POST", "/v1/admin/revoke-token"): frozenset({"admin"}),
    ("GET", "/v1/admin/requests"): frozenset({"auditor", "admin"}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) caller.

    Attributes:
        caller: the API key id, or ``anonymous``.
        role: its role, or None when anonymous.
        via: ``api_key``, ``jwt`` or ``none``.
    """

    caller: str
    role: str | None
    via: str


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``per_second`` refill, ``burst`` capacity."""

    per_second: float
    burst: float


class RateLimiter:
    """Token buckets by name; thread-safe; forgets full buckets when it holds too many."""

    def __init__(self, *, max_buckets: int = 100_000) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._max = max_buckets

    def take(self, name: str, limit: RateLimit, now: float) -> float:
        """Take one token; return 0 if allowed, else seconds until one is available."""
        with self._lock:
            tokens, last = self._buckets.get(name, (limit.burst, now))
            tokens = min(limit.burst, tokens + (now - last) * limit.per_second)
            if tokens >= 1:
                self._buckets[name] = (tokens - 1, now)
                if len(self._buckets) > self._max:
                    self._prune(now, limit)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1 - tokens) / limit.per_second

    def _prune(self, now: float, limit: RateLimit) -> None:
        full = [k for k, (t, last) in self._buckets.items()
                if t + (now - last) * limit.per_second >= limit.burst]
        for key in full:
            del self._buckets[key]


class Authenticator:
    """Authenticates, authorises and rate-limits one request.

    Args:
        store: the API key store.
        tokens: the JWT service, or None to accept API keys only.
        limit: the default per-key rate limit.
        anonymous_limit: the per-address limit of public routes.
    """

    def __init__(self, store: KeyStore, tokens: TokenService | None, *,
                 limit: RateLimit = RateLimit(20.0, 40.0),
                 anonymous_limit: RateLimit = RateLimit(10.0, 20.0)) -> None:
        self.store, self.tokens = store, tokens
        self.limit, self.anonymous_limit = limit, anonymous_limit
        self._limiter = RateLimiter()

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolve the ``Authorization`` header to a principal.

        Raises:
            Denied: 401 with reason ``missing_credentials``, ``malformed_key``,
                ``unknown_key``, ``bad_secret``, ``revoked_key``,
                ``invalid_token``, ``expired_token`` or ``revoked_token``.
        """
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Denied(401, "missing_credentials", "authentication required: send "
                         "'Authorization: Bearer <API key or token>'")
        if credential.count(".") == 2 and not credential.startswith("sealtune_"):
            return self._from_token(credential)
        info, reason = self.store.verify(credential)
        if reason != "ok":
            raise Denied(401, reason, "the API key is not valid (unknown or revoked)",
                         actor=info.key_id if info else ANONYMOUS)
        assert info is not None
        return Principal(info.key_id, info.role, "api_key")

    def _from_token(self, token: str) -> Principal:
        if self.tokens is None:
            raise Denied(401, "invalid_token", "this server accepts API keys only")
        claims = self.tokens.verify(token)
        key = self.store.get(str(claims["sub"]))
        if key is None or key.revoked or key.role != claims["role"]:
            raise Denied(401, "revoked_key", "the token's API key is revoked",
                         actor=str(claims["sub"]))
        if self.store.token_revoked(claims["jti"]):
            raise Denied(401, "revoked_token", "the bearer token was revoked", actor=key.key_id)
        return Principal(key.key_id, key.role, "jwt")

    def check(self, *, method: str, path: str, authorization: str | None, client: str,
              now: float) -> Principal:
        """Authenticate, authorise against :data:`ROUTE_ROLES` and rate-limit one request.

        Raises:
            Denied: 401, 403 (``role_forbidden``, ``route_not_in_matrix``) or 429.
        """
        roles = ROUTE_ROLES.get((method, path))
        if roles is None:
            raise Denied(403, "route_not_in_matrix", "this route has no access rule")
        if roles is PUBLIC:
            principal = Principal(ANONYMOUS, None, "none")
            bucket, limit = f"addr:{client}", self.anonymous_limit
        else:
            principal = self.authenticate(authorization)
            if principal.role not in roles:
                raise Denied(403, "role_forbidden", f"role {principal.role!r} may not call "
                             f"{method} {path}", actor=principal.caller)
            bucket, limit = f"key:{principal.caller}", self._limit_of(principal)
        wait = self._limiter.take(bucket, limit, now)
        if wait > 0:
            raise Denied(429, "rate_limited", "rate limit exceeded; retry later",
                         actor=principal.caller, retry_after=float(math.ceil(wait)))
        return principal

    def _limit_of(self, principal: Principal) -> RateLimit:
        info = self.store.get(principal.caller)
        if info is None or info.rate_per_second is None:
            return self.limit
        rate = info.rate_per_second
        return RateLimit(rate, max(1.0, 2 * rate))


def check_route_matrix(routes: list[tuple[str, str]]) -> None:
    """Refuse routes that have no entry in :data:`ROUTE_ROLES` (fail closed).

    Raises:
        UsageError: naming the first route without a rule.
    """
    for method, path in routes:
        if (method, path) not in ROUTE_ROLES:
            raise UsageError(f"route {method} {path} has no entry in serve.auth.ROUTE_ROLES",
                             hint="add the roles allowed to call it (or PUBLIC)")
