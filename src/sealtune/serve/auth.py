"""Who may call the server: API keys, JWT bearer tokens, roles on every route, rate limits.

* **Credentials** arrive as ``Authorization: Bearer <credential>``: an API
  key (``sealtune_<id>_<secret>``, see :mod:`~sealtune.serve.keystore`) or a
  JWT issued for one (HS256 with a 256-bit key held in the workspace
  keyring; ``iss``, ``aud``, ``exp``, ``iat``, ``nbf``, ``sub``, ``jti``
  required; default lifetime 1 hour, at most 24). The token header must say
  ``HS256`` and nothing else (``alg: none``, RS/ES/EdDSA and key-carrying
  headers such as ``jwk``/``jku``/``x5u`` are refused), so no algorithm
  confusion is possible. A token stops working when its ``jti`` is revoked
  or its API key is.
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

What this protects against: unauthenticated or over-privileged calls,
forged, expired, revoked or re-algorithmed tokens, and one caller starving
the others. What it does not: a stolen valid credential until it is revoked
or expires; bearer credentials are readable by whoever terminates TLS
(end-to-end encryption protects prompts, not credentials); per-address
limits do not stop a distributed flood.
"""

from __future__ import annotations

import math
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from sealtune.errors import UsageError
from sealtune.serve.keystore import ROLES, ApiKeyInfo, KeyStore

PUBLIC: frozenset[str] = frozenset({"<public>"})
ANONYMOUS = "anonymous"
AUDIENCE = "sealtune-serve"
DEFAULT_TTL = timedelta(hours=1)
MAX_TTL = timedelta(hours=24)
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


class Denied(Exception):
    """A request refused by authentication, authorisation, rate limiting or policy.

    Attributes:
        status: 401, 403, 413, 415 or 429.
        reason: a short code for logs and the ledger (never data).
        message: what the caller reads.
        actor: the key id, or ``anonymous``.
        retry_after: seconds, for 429.
    """

    def __init__(self, status: int, reason: str, message: str, *, actor: str = ANONYMOUS,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.message = status, reason, message
        self.actor, self.retry_after = actor, retry_after


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


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued JWT (shown once) and its id and expiry (epoch seconds)."""

    token: str
    jti: str
    expires: int


class TokenService:
    """Issues and verifies HS256 JWTs bound to API keys.

    Args:
        secret: at least 32 random bytes from the workspace keyring.
        issuer: ``iss`` (``sealtune/<workspace id>``).
        audience: ``aud``.
        leeway: clock skew tolerated, in seconds.
    """

    def __init__(self, secret: bytes, *, issuer: str, audience: str = AUDIENCE,
                 leeway: float = 5.0) -> None:
        if len(secret) < 32:
            raise UsageError("the JWT signing key must be at least 32 bytes")
        self._secret, self.issuer, self.audience, self._leeway = secret, issuer, audience, leeway

    def issue(self, key: ApiKeyInfo, *, ttl: timedelta = DEFAULT_TTL,
              now: datetime) -> IssuedToken:
        """Issue a token for ``key`` (its role, its rate limit bucket).

        Raises:
            UsageError: ``ttl`` not in (0, 24 h], or the key is revoked.
        """
        if not timedelta(0) < ttl <= MAX_TTL:
            raise UsageError("token lifetime must be between 1 second and 24 hours",
                             hint="tokens are short-lived by design; issue a new one instead")
        if key.revoked:
            raise UsageError(f"API key {key.key_id} is revoked")
        iat = int(now.timestamp())
        jti = secrets.token_hex(16)
        exp = iat + int(ttl.total_seconds())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": key.key_id, "role": key.role,
                  "iat": iat, "nbf": iat, "exp": exp, "jti": jti}
        return IssuedToken(jwt.encode(claims, self._secret, algorithm="HS256"), jti, exp)

    def verify(self, token: str) -> dict[str, Any]:
        """Verify signature and claims (against the current time).

        Raises:
            Denied: 401 ``invalid_token`` or ``expired_token``.
        """
        bad = Denied(401, "invalid_token", "the bearer token is not valid")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise bad from None
        if header.get("alg") != "HS256" or set(header) - {"alg", "typ"}:
            raise bad
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=["HS256"], audience=self.audience,
                issuer=self.issuer, leeway=self._leeway,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise Denied(401, "expired_token", "the bearer token expired; get a new one") from None
        except jwt.PyJWTError:
            raise bad from None
        if claims.get("role") not in ROLES or not isinstance(claims.get("jti"), str):
            raise bad
        return claims


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
