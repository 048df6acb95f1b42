"""Who may call the control plane: API keys, console sessions, CSRF, roles, rate limits.

* **Credentials** are the inference server's: an API key or a JWT issued for
  one, checked by :class:`sealtune.serve.auth.Authenticator` (never
  re-implemented here). API clients send ``Authorization: Bearer ...``.
* **Console sessions**: ``POST /login`` with an API key creates a session
  held in memory (only a SHA-256 of its id is kept); the browser gets it as
  an ``HttpOnly; SameSite=Strict; Path=/`` cookie (``Secure`` over HTTPS).
  Every request re-checks the key: a revoked key (or a changed role) ends its
  sessions at once. Sessions end after :data:`IDLE` without use and after
  :data:`LIFETIME` in all.
* **CSRF**: every state-changing request made with the session cookie must
  carry the session's CSRF token (header ``X-CSRF-Token`` or form field
  ``csrf_token``), and a request whose ``Origin`` names another site is
  refused, login included. Bearer requests need no token (a browser never
  attaches them on its own).
* **Roles**: :data:`ROUTE_ROLES` names the roles of every route; a route
  missing from it is denied, and :func:`check_routes` refuses to build an
  app with such a route (fail closed).
* **Rate limits**: the server's token buckets, per key and per address.

Every denial is a :class:`~sealtune.serve.auth.Denied`, answered as
401/403/429 and recorded as a ``console.denied`` ledger event (key id or
``anonymous``, route, reason; never the credential).

What this protects against: unauthenticated or over-privileged calls,
cross-site request forgery, sessions outliving their key, session ids read
from the server's memory (only hashes are kept), and scripts reading the
cookie (HttpOnly). What it does not: a stolen API key or a stolen cookie
until the key is revoked or the session expires; sessions do not survive a
restart of the console (by design: log in again); over plain HTTP beyond
loopback the cookie travels in the clear.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sealtune.errors import UsageError
from sealtune.serve.auth import (
    ANONYMOUS,
    Authenticator,
    Denied,
    Principal,
    RateLimit,
    RateLimiter,
)
from sealtune.serve.keystore import ROLES

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "IDLE",
    "LIFETIME",
    "PUBLIC",
    "ROUTE_ROLES",
    "Caller",
    "ConsoleAuth",
    "Session",
    "check_routes",
]

COOKIE = "sealtune_console"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
IDLE = 30 * 60.0
LIFETIME = 8 * 3600.0
PUBLIC: frozenset[str] = frozenset({"<public>"})
_DEFAULT_LIMIT = RateLimit(20.0, 40.0)
_ANONYMOUS_LIMIT = RateLimit(10.0, 20.0)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_ALL = frozenset(ROLES)
_STAFF = frozenset({"admin", "operator", "auditor"})
_RUN = frozenset({"admin", "operator"})
_AUDIT = frozenset({"admin", "operator", "auditor"})

#: (method, route path) -> the roles allowed; PUBLIC needs no credential.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    # the console pages
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/static/{name}"): PUBLIC,
    ("POST", "/logout"): _ALL,
    ("GET", "/"): _ALL,
    ("GET", "/models"): _ALL,
    ("GET", "/datasets"): _STAFF,
    ("GET", "/datasets/{name}"): _STAFF,
    ("GET", "/jobs"): _STAFF,
    ("GET", "/jobs/{job_id}"): _STAFF,
    ("GET", "/runs"): _STAFF,
    ("GET", "/runs/{pipeline}"): _STAFF,
    ("GET", "/keys"): _STAFF,
    ("GET", "/gates"): _STAFF,
    ("GET", "/audit"): _AUDIT,
    ("GET", "/audit/verify"): _AUDIT,
    ("POST", "/audit/checkpoint"): _RUN,
    ("GET", "/attestation"): _STAFF,
    ("POST", "/attestation"): _STAFF,
    ("GET", "/registry"): _ALL,
    ("POST", "/registry/{name}/versions/{n}/promote"): _RUN,
    ("POST", "/registry/{name}/rollback"): _RUN,
    ("POST", "/registry/{name}/versions/{n}/revoke"): _RUN,
    # the API
    ("GET", "/api/v1/me"): _ALL,
    ("GET", "/api/v1/openapi.json"): _ALL,
    ("GET", "/api/v1/models"): _ALL,
    ("GET", "/api/v1/models/{name}"): _ALL,
    ("GET", "/api/v1/datasets"): _STAFF,
    ("GET", "/api/v1/datasets/{name}"): _STAFF,
    ("GET", "/api/v1/datasets/{name}/bom"): _STAFF,
    ("GET", "/api/v1/jobs"): _STAFF,
    ("GET", "/api/v1/jobs/{job_id}"): _STAFF,
    ("GET", "/api/v1/runs"): _STAFF,
    ("GET", "/api/v1/runs/{pipeline}/timeline"): _STAFF,
    ("GET", "/api/v1/keys"): _STAFF,
    ("GET", "/api/v1/gates"): _STAFF,
    ("GET", "/api/v1/gates/{assessment_id}"): _STAFF,
    ("GET", "/api/v1/gates/{assessment_id}/html"): _STAFF,
    ("GET", "/api/v1/audit/entries"): _AUDIT,
    ("GET", "/api/v1/audit/export"): _AUDIT,
    ("GET", "/api/v1/audit/checkpoint"): _AUDIT,
    ("POST", "/api/v1/audit/checkpoint"): _RUN,
    ("GET", "/api/v1/audit/proofs/inclusion/{seq}"): _AUDIT,
    ("GET", "/api/v1/audit/proofs/consistency"): _AUDIT,
    ("POST", "/api/v1/attestation/verify"): _STAFF,
    # the model registry (see sealtune.api.registry_routes)
    ("GET", "/api/v1/registry/models"): _ALL,
    ("GET", "/api/v1/registry/models/{name}"): _ALL,
    ("POST", "/api/v1/registry/models/{name}/versions/{n}/promote"): _RUN,
    ("POST", "/api/v1/registry/models/{name}/rollback"): _RUN,
    ("POST", "/api/v1/registry/models/{name}/versions/{n}/revoke"): _RUN,
    # OpenAI-compatible fine-tuning (see sealtune.api.finetune)
    ("POST", "/v1/files"): _RUN,
    ("GET", "/v1/files"): _RUN,
    ("POST", "/v1/fine_tuning/jobs"): _RUN,
    ("GET", "/v1/fine_tuning/jobs"): _RUN,
    ("GET", "/v1/fine_tuning/jobs/{job_id}"): _RUN,
    ("GET", "/v1/fine_tuning/jobs/{job_id}/events"): _RUN,
    ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel"): _RUN,
    ("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints"): _RUN,
}


def check_routes(routes: list[tuple[str, str]]) -> None:
    """Refuse routes without an entry in :data:`ROUTE_ROLES` (fail closed).

    Raises:
        UsageError: naming the first route without a rule.
    """
    for method, path in routes:
        if (method, path) not in ROUTE_ROLES:
            raise UsageError(f"route {method} {path} has no entry in api.session.ROUTE_ROLES",
                             hint="add the roles allowed to call it (or PUBLIC)")


@dataclass
class Session:
    """One console session (kept in memory under the SHA-256 of its id)."""

    key_id: str
    role: str
    csrf: str
    created: float
    used: float


@dataclass(frozen=True)
class Caller:
    """An authorised request's caller.

    Attributes:
        principal: who (key id, role, how authenticated).
        csrf: the session's CSRF token, or None for bearer callers.
    """

    principal: Principal
    csrf: str | None


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


class ConsoleAuth:
    """Authenticates, authorises and rate-limits the control plane's requests.

    Args:
        auth: the server's authenticator over the workspace's API keys.
        limit: the default per-key rate limit.
        anonymous_limit: the per-address limit of public routes (login included).
        clock: monotonic seconds (tests pass a fake to expire sessions).
    """

    def __init__(self, auth: Authenticator, *, limit: RateLimit = _DEFAULT_LIMIT,
                 anonymous_limit: RateLimit = _ANONYMOUS_LIMIT,
                 clock: Callable[[], float] | None = None) -> None:
        self.auth, self.limit, self.anonymous_limit = auth, limit, anonymous_limit
        self._clock: Callable[[], float] = clock or time.monotonic
        self._limiter = RateLimiter()
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    # -- sessions ----------------------------------------------------------------

    def login(self, api_key: str) -> tuple[str, Session]:
        """Check an API key and open a session; returns (session id, session).

        Raises:
            Denied: 401 when the key is not valid.
        """
        principal = self.auth.authenticate(f"Bearer {api_key.strip()}")
        if principal.via != "api_key" or principal.role is None:
            raise Denied(401, "not_an_api_key", "log in with an API key",
                         actor=principal.caller)
        now = self._clock()
        sid = secrets.token_urlsafe(32)
        session = Session(principal.caller, principal.role, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            self._sessions[_digest(sid)] = session
        return sid, session

    def logout(self, session_id: str | None) -> None:
        """End a session (unknown ids are ignored)."""
        if session_id:
            with self._lock:
                self._sessions.pop(_digest(session_id), None)

    def _expire(self, now: float) -> None:
        dead = [k for k, s in self._sessions.items()
                if now - s.used > IDLE or now - s.created > LIFETIME]
        for k in dead:
            del self._sessions[k]

    def _session(self, session_id: str) -> Session:
        now = self._clock()
        with self._lock:
            session = self._sessions.get(_digest(session_id))
            if session is None or now - session.used > IDLE or now - session.created > LIFETIME:
                self._sessions.pop(_digest(session_id), None)
                raise Denied(401, "no_session", "your session ended: log in again")
            session.used = now
        info = self.auth.store.get(session.key_id)
        if info is None or info.revoked or info.role != session.role:
            self.logout(session_id)
            raise Denied(401, "revoked_key", "the session's API key is revoked",
                         actor=session.key_id)
        return session

    # -- the guard ---------------------------------------------------------------

    def check(self, *, method: str, path: str, authorization: str | None,
              session_id: str | None, csrf: str | None, origin_ok: bool,
              client: str) -> Caller:
        """Authenticate, authorise, check CSRF and rate-limit one request.

        Args:
            method, path: the request method and the matched route's path.
            authorization: the ``Authorization`` header, if any (wins over the cookie).
            session_id: the session cookie, if any.
            csrf: the CSRF token the request carries (header or form field).
            origin_ok: False when ``Origin`` names another site.
            client: the client address (anonymous rate limit).

        Raises:
            Denied: 401, 403 (``role_forbidden``, ``route_not_in_matrix``,
                ``csrf_failed``, ``cross_origin``) or 429.
        """
        roles = ROUTE_ROLES.get((method, path))
        if roles is None:
            raise Denied(403, "route_not_in_matrix", "this route has no access rule")
        if method not in _SAFE and not origin_ok:
            raise Denied(403, "cross_origin", "cross-site request refused")
        if roles is PUBLIC:
            self._take(f"addr:{client}", self.anonymous_limit, ANONYMOUS)
            return Caller(Principal(ANONYMOUS, None, "none"), None)
        caller = self._authenticate(authorization, session_id)
        if caller.csrf is not None and method not in _SAFE and not (
                csrf and hmac.compare_digest(csrf.encode(), caller.csrf.encode())):
            raise Denied(403, "csrf_failed", "missing or wrong CSRF token: reload the page",
                         actor=caller.principal.caller)
        principal = caller.principal
        if principal.role not in roles:
            raise Denied(403, "role_forbidden", f"role {principal.role!r} may not call "
                         f"{method} {path}", actor=principal.caller)
        self._take(f"key:{principal.caller}", self._limit_of(principal), principal.caller)
        return caller

    def _authenticate(self, authorization: str | None, session_id: str | None) -> Caller:
        if authorization:
            return Caller(self.auth.authenticate(authorization), None)
        if session_id:
            s = self._session(session_id)
            return Caller(Principal(s.key_id, s.role, "session"), s.csrf)
        raise Denied(401, "missing_credentials", "authentication required: log in, or send "
                     "'Authorization: Bearer <API key or token>'")

    def _take(self, bucket: str, limit: RateLimit, actor: str) -> None:
        wait = self._limiter.take(bucket, limit, time.monotonic())
        if wait > 0:
            raise Denied(429, "rate_limited", "rate limit exceeded; retry later",
                         actor=actor, retry_after=float(math.ceil(wait)))

    def _limit_of(self, principal: Principal) -> RateLimit:
        info = self.auth.store.get(principal.caller)
        if info is None or info.rate_per_second is None:
            return self.limit
        rate = info.rate_per_second
        return RateLimit(rate, max(1.0, 2 * rate))
