"""The control-plane app: the ``/api/v1`` API, the OpenAI-compatible fine-tuning routes
and the console pages, behind one guard, over one open workspace.

Every route passes :meth:`~sealtune.api.session.ConsoleAuth.check`
(credentials or session, CSRF on state changes, role, rate limit); a route
without an access rule makes :func:`create_app` fail. Every response carries
a strict Content-Security-Policy (no inline script or style, no framing),
``nosniff``, ``Referrer-Policy: same-origin`` and ``no-store`` (static files excepted).
Denials are ``console.denied`` ledger events; log-ins and log-outs are
``console.login`` / ``console.logout``.

What this protects against: unauthenticated, over-privileged, cross-site
and over-rate requests; pages framed or scripted by another site; responses
cached by a shared proxy; stage errors leaking internals (only sealtune
errors' messages are shown; anything else is ``internal error`` and its
class name). What it does not: it is a separate process from the inference
server but runs with the workspace passphrase, so whoever controls its host
controls the workspace; serve it on loopback or behind TLS.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from sealtune.api.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    Caller,
    ConsoleAuth,
    check_routes,
)
from sealtune.errors import SealtuneError, UsageError
from sealtune.serve.audit import AuditSink
from sealtune.serve.auth import Denied

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["CSP", "Console", "create_app"]

CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin"}
_FORM_LIMIT = 256 * 1024
_T = TypeVar("_T")


@dataclass
class Console:
    """The state behind the routes: the workspace, the guard, the ledger sink.

    Attributes:
        ws: the open workspace (calls into it hold :attr:`lock`: stages are not
            written for concurrent use of one Workspace object).
        auth: the guard.
        audit: queues ``console.*`` ledger events.
        secure_cookie: mark the session cookie ``Secure`` (served over HTTPS).
    """

    ws: Workspace
    auth: ConsoleAuth
    audit: AuditSink
    secure_cookie: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a stage call in a worker thread, one at a time."""
        def locked() -> _T:
            with self.lock:
                return fn(*args, **kwargs)
        return await run_in_threadpool(locked)

    async def form(self, request: Request) -> dict[str, str]:
        """A small URL-encoded form body (cached on the request), at most 256 KiB.

        Raises:
            Denied: 413 when the body is larger.
        """
        cached = getattr(request.state, "form", None)
        if isinstance(cached, dict):
            return cached
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _FORM_LIMIT:
                raise Denied(413, "body_too_large", "form too large")
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            for k, v in urllib.parse.parse_qsl(body.decode("utf-8", "replace"),
                                               max_num_fields=32):
                form.setdefault(k, v)
        request.state.form = form
        return form


def caller_of(request: Request) -> Caller:
    """The guard's verdict for this request."""
    caller = getattr(request.state, "caller", None)
    assert isinstance(caller, Caller)
    return caller


def _origin_ok(request: Request) -> bool:
    """False when the browser says the request comes from another site.

    ``Sec-Fetch-Site`` decides when present; else ``Origin`` must name this host
    (absent means not a browser, or a same-origin navigation).
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/v1/"))


def create_app(console: Console) -> FastAPI:
    """Build the control-plane app over an open workspace.

    Raises:
        UsageError: a route has no entry in :data:`~sealtune.api.session.ROUTE_ROLES`.
    """
    from sealtune.api import finetune, pages, registry_routes, routes

    async def guard(request: Request) -> None:
        method = request.method
        csrf = request.headers.get(CSRF_HEADER)
        if csrf is None and method not in ("GET", "HEAD") and not _is_api(request.url.path):
            csrf = (await console.form(request)).get(CSRF_FIELD)
        route = request.scope.get("route")
        request.state.caller = console.auth.check(
            method=method, path=getattr(route, "path", ""),
            authorization=request.headers.get("authorization"),
            session_id=request.cookies.get(COOKIE), csrf=csrf,
            origin_ok=_origin_ok(request),
            client=request.client.host if request.client else "-")

    app = FastAPI(title="sealtune control plane", version="1", openapi_url=None,
                  docs_url=None, redoc_url=None, dependencies=[Depends(guard)])
    app.state.console = console
    app.include_router(routes.router)
    app.include_router(finetune.router)
    app.include_router(pages.router)
    app.include_router(registry_routes.router)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response: Response = await call_next(request)
        for k, v in _HEADERS.items():
            response.headers.setdefault(k, v)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(Denied)
    async def on_denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Denied)
        route = f"{request.method} {getattr(request.scope.get('route'), 'path', '-')}"
        console.audit.record("console.denied", actor=exc.actor, resource=route,
                             outcome="denied", details={"route": route, "reason": exc.reason,
                                                        "status": exc.status})
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else {}
        if _is_api(request.url.path):
            return JSONResponse({"error": {"message": exc.message, "code": exc.reason}},
                                status_code=exc.status, headers=headers)
        if exc.status == 401:
            return RedirectResponse("/login", status_code=303)
        return pages.error_page(request, exc.status, exc.message, headers=headers)

    @app.exception_handler(SealtuneError)
    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SealtuneError)
        # UsageError: a bad parameter or an unknown name (the message says which); anything
        # else (integrity, keyring, ...) is a state of the workspace, not of the request.
        status = 400 if isinstance(exc, UsageError) else 409
        if _is_api(request.url.path):
            return JSONResponse({"error": {"message": exc.message, "hint": exc.hint,
                                           "type": type(exc).__name__}}, status_code=status)
        return pages.error_page(request, status, exc.message)

    routes_ = [(m, r.path) for r in app.routes if isinstance(r, APIRoute)
               for m in r.methods or ()]
    check_routes(routes_)
    return app


def static_dir() -> Path:
    """The console's static files (CSS, the vendored htmx)."""
    return Path(__file__).parent / "console" / "static"
