"""The confidential inference server: an OpenAI-compatible API with end-to-end encryption.

Routes (roles in :data:`sealtune.serve.auth.ROUTE_ROLES`): ``POST
/v1/chat/completions`` (plaintext JSON, or end-to-end encrypted per
``docs/formats/e2e-http-v1.md``; ``stream=true`` as server-sent events),
``GET /v1/models``, ``GET /v1/attestation[?nonce=B64]`` (public: clients
verify it before they send anything), ``GET /healthz`` (public), and
``POST /v1/admin/rotate-key``, ``POST /v1/admin/revoke-token``, ``GET
/v1/admin/requests``. Every route passes one guard (authentication, role,
rate limit); denials are 401/403/429 JSON errors and ``serve.denied`` ledger
events. The output filter runs on every answer before it is sealed.

What this protects against: a network attacker, a TLS-terminating load
balancer or a logging proxy sees only ciphertext of prompts and responses
in encrypted mode (and an ``--encrypted-only`` server refuses plaintext
instead of falling back); API callers are authenticated, limited to their
role, rate-limited and audited; prompts and responses never reach logs,
error messages or disk (request logs hold time, route, status, caller,
latency and token counts). What it does not: the server process and its host
see plaintext unless the process runs in a real TEE, and ``dev-software``
attestation proves nothing about hardware (see ``docs/threat-model.md``);
request metadata (sizes, timing, caller) is visible. A captured encrypted
request replayed to the server is refused (``replayed_request``: each
server key remembers the requests it opened, see
:class:`~sealtune.core.protocol.ServerKeys`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from sealtune.attest.base import AttestationProvider
from sealtune.attest.report import (
    Measurement,
    build_report,
    decode_nonce,
    dumps_report,
    measure_bytes,
    measure_code,
)
from sealtune.core.protocol import ReplayError, ServerKeys, StaleKeyError, encode_key_configs
from sealtune.errors import AttestationError, IntegrityError
from sealtune.serve import e2e
from sealtune.serve.audit import AuditSink
from sealtune.serve.auth import Authenticator, Denied, Principal, check_route_matrix
from sealtune.serve.completions import Completions, plain_sse
from sealtune.serve.engines.base import Engine
from sealtune.serve.logs import SCOPE_KEY, AccessLogMiddleware, RequestLog, RequestRecord
from sealtune.serve.openai_api import BadRequest, error_body, load_json
from sealtune.serve.settings import ServeSettings
from sealtune.serve.watch import TEXTS_KEY, Served, ServerResponses, Watch, model_version

_JSON = "application/json"
_NO_CACHE = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_ADMIN_BODY_LIMIT = 65536
_CHAT = "/v1/chat/completions"


def _record(request: Request) -> RequestRecord:
    rec = request.scope.get(SCOPE_KEY)
    return rec if isinstance(rec, RequestRecord) else RequestRecord()


def _json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


class _Server:
    """The state behind the routes of one app."""

    def __init__(self, settings: ServeSettings, engine: Engine, keys: ServerKeys,
                 provider: AttestationProvider, auth: Authenticator, audit: AuditSink,
                 log: RequestLog, watch: Watch, responses: ServerResponses | None) -> None:
        self.settings, self.engine, self.keys = settings, engine, keys
        self.provider, self.auth, self.audit, self.log = provider, auth, audit, log
        self.watch, self.responses = watch, responses
        self.completions = Completions(settings, engine, watch.current)
        self.measurement = Measurement(code=measure_code(), model=settings.model_digest,
                                       config=measure_bytes(settings.measured()))
        self.started = int(time.time())
        self._rotate_lock = threading.Lock()
        self._report_cache: tuple[bytes, float, bytes] | None = None

    # -- guard, denials, lifecycle ------------------------------------------------

    async def guard(self, request: Request) -> None:
        """Runs before every route: authenticate, authorise, rate-limit."""
        route = request.scope.get("route")
        principal = self.auth.check(
            method=request.method, path=getattr(route, "path", ""),
            authorization=request.headers.get("authorization"),
            client=request.client.host if request.client else "-", now=time.monotonic())
        request.state.principal = principal
        _record(request).caller = principal.caller

    async def on_denied(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Denied)
        route = f"{request.method} {getattr(request.scope.get('route'), 'path', '-')}"
        rec = _record(request)
        rec.caller, rec.error = exc.actor, exc.reason
        self.watch.denied(exc.reason)
        self.audit.record("serve.denied", actor=exc.actor, resource=route, outcome="denied",
                          details={"route": route, "reason": exc.reason, "status": exc.status})
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(int(exc.retry_after))
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="sealtune"'
        body = error_body(exc.message, _ERROR_TYPES.get(exc.status, "invalid_request_error"),
                          code=exc.reason)
        return _json_response(exc.status, body, headers)

    async def on_gone(self, request: Request, exc: Exception) -> Response:
        """The client went away mid-body (or its body deadline passed): nobody to answer."""
        _record(request).error = "client_disconnected"
        return _json_response(400, error_body("the request body did not arrive",
                                              "invalid_request_error", code="incomplete_body"))

    async def on_invalid(self, request: Request, exc: Exception) -> Response:
        _record(request).error = "validation"
        return _json_response(400, error_body("invalid request parameters",
                                              "invalid_request_error", code="invalid_request"))

    def swap_model(self, settings: ServeSettings, engine: Engine, served: Served) -> None:
        """Serve another model from now on (a registry stage alias moved): new measurement.

        ``served``: the new version's checks (:meth:`Watch.bind`), swapped in with the
        engine in one step: a request runs one engine and is checked by its version's
        filter and canaries. Recorded as ``serve.model_swapped``; the cached
        attestation report is dropped, so the next report measures the new model.
        """
        completions = Completions(settings, engine, served)
        measurement = Measurement(code=measure_code(), model=settings.model_digest,
                                  config=measure_bytes(settings.measured()))
        self.settings, self.engine, self.completions = settings, engine, completions
        self.measurement, self._report_cache = measurement, None
        self.watch.swap(served, model_id=settings.model_id, digest=settings.model_digest,
                        engine=settings.engine)
        self.audit.record("serve.model_swapped", actor="sealtune-serve",
                          resource=settings.model_id,
                          details={"measurement": measurement.to_dict()})

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self.audit.record("serve.start", actor="sealtune-serve", resource=self.settings.model_id,
                          details={"engine": self.settings.engine,
                                   "platform": self.provider.platform,
                                   "encrypted_only": self.settings.encrypted_only,
                                   "key_id": self.keys.current.key_id,
                                   "measurement": self.measurement.to_dict()})
        self.watch.served(model_id=self.settings.model_id, digest=self.settings.model_digest,
                          engine=self.settings.engine)
        try:
            yield
        finally:
            self.watch.close()
            self.audit.record("serve.stop", actor="sealtune-serve",
                              resource=self.settings.model_id)
            self.audit.close()

    # -- keys and attestation --------------------------------------------------------

    def rotate(self, now: float, *, actor: str, force: bool = False) -> int:
        """Rotate the HPKE key (when due, or when forced); return the current key id."""
        with self._rotate_lock:
            if force or self.keys.rotation_due(now=now):
                old = self.keys.current.key_id
                new = self.keys.rotate(now=now)
                self._report_cache = None
                self.audit.record("serve.key_rotated", actor=actor, resource="hpke-key",
                                  details={"old_key_id": old, "new_key_id": new.key_id})
            return self.keys.current.key_id

    def report(self, nonce: bytes | None) -> bytes:
        now = time.time()
        self.rotate(now, actor="sealtune-serve")
        configs = encode_key_configs(self.keys.key_configs(now=now))
        cached = self._report_cache
        if (nonce is None and cached is not None and cached[0] == configs
                and now - cached[1] < self.settings.report_cache_seconds):
            return cached[2]
        body = dumps_report(build_report(self.provider, key_configs=configs,
                                         measurement=self.measurement, nonce=nonce,
                                         now=datetime.now(UTC)))
        if nonce is None:
            self._report_cache = (configs, now, body)
        return body

    async def attestation(self, request: Request, nonce: str | None = None) -> Response:
        """The attestation report (fresh for a nonce; cached briefly without)."""
        try:
            raw = None if nonce is None else decode_nonce(nonce)
        except AttestationError as exc:
            return _json_response(400, error_body(exc.message, "invalid_request_error",
                                                  code="invalid_nonce", param="nonce"))
        body = await run_in_threadpool(self.report, raw)
        return Response(body, media_type=_JSON, headers={"Cache-Control": "no-store"})

    # -- chat completions ----------------------------------------------------------------

    async def _read(self, request: Request, limit: int) -> bytes:
        principal: Principal = request.state.principal
        size = request.headers.get("content-length")
        too_big = Denied(413, "body_too_large", f"the request body exceeds {limit} bytes",
                         actor=principal.caller)
        if size is not None and (not size.isdigit() or int(size) > limit):
            raise too_big
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: plaintext JSON or end-to-end encrypted."""
        rec = _record(request)
        principal: Principal = request.state.principal
        if self.responses is not None and self.responses.withdrawn:
            rec.error = "model_withdrawn"
            return _json_response(503, error_body(
                "this model was taken out of service by the monitor policy", "server_error",
                code="model_withdrawn"))
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == e2e.REQUEST_MEDIA_TYPE:
            return await self._chat_e2e(request, rec, principal)
        if media == e2e.CHUNKED_REQUEST_MEDIA_TYPE:
            return _json_response(415, error_body(
                "streamed (chunked) encrypted requests are not supported by e2e-http-v1; send "
                f"the whole request as {e2e.REQUEST_MEDIA_TYPE}", "invalid_request_error",
                code="unsupported_media_type"))
        if self.settings.encrypted_only:
            raise Denied(403, "plaintext_refused",
                         "this server accepts only end-to-end encrypted requests "
                         f"(Content-Type: {e2e.REQUEST_MEDIA_TYPE}); use the sealtune client "
                         "or 'sealtune proxy'", actor=principal.caller)
        if media not in (_JSON, ""):
            return _json_response(415, error_body(
                f"send {_JSON} or {e2e.REQUEST_MEDIA_TYPE}", "invalid_request_error",
                code="unsupported_media_type"))
        rec.mode = "plain"
        raw = await self._read(request, self.settings.max_body_bytes)
        completions = self.completions  # one model version for the whole request
        answer = await completions.answer(raw, rec, self._texts(request))
        if answer.events is not None:
            return StreamingResponse(completions.body(plain_sse(answer.events)),
                                     media_type="text/event-stream", headers=_NO_CACHE)
        return _json_response(answer.status, answer.body)

    def _texts(self, request: Request) -> dict[str, Any]:
        """The request's texts for the detectors (dropped by :meth:`Watch.done`); admits it."""
        self.watch.started(_CHAT)
        texts: dict[str, Any] = {"admitted": True}
        request.scope[TEXTS_KEY] = texts
        return texts

    async def _chat_e2e(self, request: Request, rec: RequestRecord,
                        principal: Principal) -> Response:
        rec.mode = "e2e"
        body = await self._read(request, self.settings.max_body_bytes)
        now = time.time()
        self.rotate(now, actor="sealtune-serve")
        try:
            plaintext, ctx = self.keys.open_request(body, now=now)
        except (StaleKeyError, IntegrityError) as exc:
            if isinstance(exc, StaleKeyError):
                rec.error, out = "stale_key", e2e.stale_key_body(body[0] if body else None)
            elif isinstance(exc, ReplayError):
                rec.error, out = "replayed_request", e2e.replay_body()
            else:
                rec.error, out = "integrity_error", e2e.integrity_body()
            self.watch.e2e_rejected(rec.error)
            self.audit.record("serve.e2e_rejected", actor=principal.caller,
                              resource="POST /v1/chat/completions", outcome="failure",
                              details={"reason": rec.error})
            return _json_response(400, out)
        completions = self.completions  # one model version for the whole request
        answer = await completions.answer(plaintext, rec, self._texts(request))
        del plaintext
        if answer.events is not None:
            return StreamingResponse(completions.body(e2e.seal_events(ctx, answer.events)),
                                     media_type=e2e.CHUNKED_RESPONSE_MEDIA_TYPE, headers=_NO_CACHE)
        return Response(e2e.seal_whole(ctx, answer.status, answer.body),
                        media_type=e2e.RESPONSE_MEDIA_TYPE, headers=_NO_CACHE)

    # -- the other routes ------------------------------------------------------------------

    async def models(self) -> Response:
        """``GET /v1/models``: the one served model."""
        body = {"object": "list", "data": [{"id": self.engine.model_id, "object": "model",
                                             "created": self.started, "owned_by": "sealtune"}]}
        return _json_response(200, json.dumps(body).encode())

    def on_done(self, rec: RequestRecord, scope: Any, arrived: float) -> None:
        """Each finished request, to the monitor (from the access-log middleware)."""
        texts = scope.get(TEXTS_KEY) or {}
        self.watch.done(rec, scope, arrived=arrived, admitted=bool(texts.get("admitted")))

    async def healthz(self) -> Response:
        """``GET /healthz``: liveness (public, says nothing else)."""
        return _json_response(200, b'{"status":"ok"}')

    async def rotate_key(self, request: Request) -> Response:
        """``POST /v1/admin/rotate-key``: a new HPKE key now (the old one has its grace window)."""
        principal: Principal = request.state.principal
        key_id = self.rotate(time.time(), actor=principal.caller, force=True)
        return _json_response(200, json.dumps({"key_id": key_id}).encode())

    async def revoke_token(self, request: Request) -> Response:
        """``POST /v1/admin/revoke-token``: ``{"jti": "..."}`` or ``{"token": "..."}``."""
        principal: Principal = request.state.principal
        try:
            body = load_json(await self._read(request, _ADMIN_BODY_LIMIT))
        except BadRequest:
            body = None
        jti, expires = _revocation_target(self.auth, body)
        if jti is None:
            return _json_response(400, error_body(
                'send {"jti": "<token id>"} or {"token": "<a valid token>"}',
                "invalid_request_error", code="invalid_request"))
        await run_in_threadpool(self.auth.store.revoke_token, jti, expires=expires,
                                now=time.time())
        self.audit.record("serve.token_revoked", actor=principal.caller, resource=f"jti:{jti}",
                          details={"jti": jti})
        return _json_response(200, json.dumps({"revoked": jti}).encode())

    async def requests(self, limit: int = 100) -> Response:
        """``GET /v1/admin/requests``: the newest request records (metadata only)."""
        data = self.log.recent(max(0, min(limit, 1000)))
        return _json_response(200, json.dumps({"object": "list", "data": data}).encode())


def _revocation_target(auth: Authenticator, body: Any) -> tuple[str | None, float]:
    """The jti to revoke and until when to remember it (24 h when unknown)."""
    horizon = time.time() + 24 * 3600
    if not isinstance(body, dict):
        return None, horizon
    jti = body.get("jti")
    if isinstance(jti, str) and 8 <= len(jti) <= 128 and jti.isalnum():
        return jti, horizon
    token = body.get("token")
    if isinstance(token, str) and auth.tokens is not None:
        try:
            claims = auth.tokens.verify(token)
        except Denied:
            return None, horizon
        return str(claims["jti"]), float(claims["exp"])
    return None, horizon


def create_app(settings: ServeSettings, *, engine: Engine, keys: ServerKeys,
               provider: AttestationProvider, auth: Authenticator,
               ledger_audit: Callable[..., Any] | None,
               request_log: RequestLog | None = None, watch: Watch | None = None,
               responses: ServerResponses | None = None) -> FastAPI:
    """Build the server app.

    Args:
        settings: the serving configuration (measured into the attestation report).
        engine: the generation engine.
        keys: the per-boot HPKE keys (rotated on their schedule when they are due).
        provider: the attestation provider (``dev-software`` is NOT a TEE).
        auth: authentication, roles and rate limits.
        ledger_audit: ``append(*, actor, action, resource, outcome, details)`` of
            the audit ledger (e.g. ``workspace.ledger.append``), or None.
        request_log: where request records go (default: the access logger).
        watch: metrics, traces and detectors (default: none).
        responses: the monitor policy's responses (revoke a key, withdraw the model).

    Raises:
        UsageError: a route has no entry in the role matrix (fail closed).
    """
    audit = AuditSink(ledger_audit)
    watch = watch or Watch(model_version=model_version(
        model_id=settings.model_id, digest=settings.model_digest, registry=settings.registry))
    watch.bind_audit(audit.record)
    if responses is not None and responses.audit is None:
        responses.audit = audit.record
    if responses is not None and responses.on_withdraw is None:
        responses.on_withdraw = watch.withdrawn
    server = _Server(settings, engine, keys, provider, auth, audit, request_log or RequestLog(),
                     watch, responses)
    app = FastAPI(title="sealtune serve", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(server.guard)], lifespan=server.lifespan)
    app.add_api_route("/healthz", server.healthz, methods=["GET"])
    app.add_api_route("/v1/attestation", server.attestation, methods=["GET"])
    app.add_api_route("/v1/models", server.models, methods=["GET"])
    app.add_api_route("/v1/chat/completions", server.chat, methods=["POST"])
    app.add_api_route("/v1/admin/rotate-key", server.rotate_key, methods=["POST"])
    app.add_api_route("/v1/admin/revoke-token", server.revoke_token, methods=["POST"])
    app.add_api_route("/v1/admin/requests", server.requests, methods=["GET"])
    app.add_exception_handler(Denied, server.on_denied)
    app.add_exception_handler(RequestValidationError, server.on_invalid)
    app.add_exception_handler(ClientDisconnect, server.on_gone)
    app.add_middleware(AccessLogMiddleware, log=server.log, on_done=server.on_done)
    check_route_matrix(route_keys(app))
    app.state.sealtune = server
    return app


def route_keys(app: FastAPI) -> list[tuple[str, str]]:
    """Every ``(method, path)`` the app serves."""
    return sorted((method, route.path) for route in app.routes if isinstance(route, APIRoute)
                  for method in route.methods or ())
