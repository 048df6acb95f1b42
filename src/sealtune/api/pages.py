"""The console's pages: server-rendered Jinja2 (autoescaping on), no inline script or style.

Read views are plain HTML and work without JavaScript; the vendored htmx
(pinned by its SRI hash, ``allowEval`` off, indicator styles off so the CSP
needs no ``unsafe-inline``) only swaps the audit table in place. Buttons for
state changes are rendered only for roles allowed to use them, and every form
carries the session's CSRF token.

What this protects against: markup injection through names shown on a page
(autoescaping), script injection (CSP without inline script), clickjacking
(``frame-ancestors 'none'``), and the same leaks as :mod:`sealtune.api.views`.
What it does not: hiding a button is a convenience; the guard decides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from sealtune.api import views
from sealtune.api.app import Console, caller_of, static_dir
from sealtune.api.routes import attestation_view, parse_time
from sealtune.api.session import COOKIE, ROUTE_ROLES
from sealtune.serve.auth import Denied

__all__ = ["HTMX", "HTMX_SRI", "error_page", "router"]

router = APIRouter()
HTMX = "htmx-2.0.4.min.js"
#: the SRI hash of the vendored htmx (as published for htmx.org 2.0.4).
HTMX_SRI = "sha384-HGfztofotfshcF7+8n44JQL2oJmowVChPTg48S+jvZoztPfvwD79OC/LTtG6dMp+"
_STATIC = {HTMX, "console.css", "htmx-LICENSE.txt"}
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent / "console" / "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True))
_ENV.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True,
                                                     ensure_ascii=False)
_NAV = [("/", "Overview"), ("/runs", "Runs"), ("/datasets", "Datasets"), ("/jobs", "Jobs"),
        ("/models", "Models"), ("/registry", "Registry"), ("/gates", "Gate reports"),
        ("/keys", "Keys"), ("/audit", "Audit log"), ("/attestation", "Attestation")]


def _console(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


def _may(role: str | None, method: str, path: str) -> bool:
    return role in ROUTE_ROLES.get((method, path), frozenset())


def render(request: Request, template: str, status: int = 200,
           headers: dict[str, str] | None = None, **ctx: Any) -> HTMLResponse:
    """Render a page with the navigation its caller's role may follow."""
    caller = getattr(request.state, "caller", None)
    role = caller.principal.role if caller is not None else None
    nav = [(href, label) for href, label in _NAV if _may(role, "GET", href)]
    html = _ENV.get_template(template).render(
        request_path=request.url.path, nav=nav, role=role, htmx=HTMX, htmx_sri=HTMX_SRI,
        csrf=caller.csrf if caller is not None else None,
        key_id=caller.principal.caller if caller is not None else None,
        may=lambda method, path: _may(role, method, path), **ctx)
    return HTMLResponse(html, status_code=status, headers=headers)


def error_page(request: Request, status: int, message: str,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    """An error page (the message is a sealtune error's or a denial's: never payload)."""
    return render(request, "error.html", status=status, headers=headers, status_code=status,
                  message=message)


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    """The console's own static files (a fixed list: no path traversal)."""
    if name not in _STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    media = "text/css" if name.endswith(".css") else (
        "text/javascript" if name.endswith(".js") else "text/plain")
    return FileResponse(static_dir() / name, media_type=media,
                        headers={"Cache-Control": "public, max-age=3600"})


@router.get("/login", include_in_schema=False)
async def login_page(request: Request) -> HTMLResponse:
    """The log-in form (an API key)."""
    return render(request, "login.html", error=None)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the API key, open a session, set the cookie."""
    c = _console(request)
    form = await c.form(request)
    try:
        sid, session = c.auth.login(form.get("api_key", ""))
    except Denied as exc:
        c.audit.record("console.denied", actor=exc.actor, resource="POST /login",
                       outcome="denied", details={"route": "POST /login",
                                                  "reason": exc.reason, "status": exc.status})
        return render(request, "login.html", status=401, error="that API key is not valid")
    c.audit.record("console.login", actor=session.key_id, resource="console",
                   details={"role": session.role})
    response = RedirectResponse("/", status_code=303)
    # A browser-session cookie: the server ends the session (idle, lifetime, revocation).
    response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/",
                        secure=c.secure_cookie)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """End the session."""
    c = _console(request)
    c.auth.logout(request.cookies.get(COOKIE))
    c.audit.record("console.logout", actor=caller_of(request).principal.caller,
                   resource="console")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/", include_in_schema=False)
async def overview(request: Request) -> HTMLResponse:
    """What the caller may look at."""
    c = _console(request)
    role = caller_of(request).principal.role
    runs = await c.call(views.run_list, c.ws) if _may(role, "GET", "/runs") else []
    return render(request, "overview.html", runs=runs)


@router.get("/runs", include_in_schema=False)
async def runs_page(request: Request) -> HTMLResponse:
    """Pipeline runs."""
    c = _console(request)
    return render(request, "runs.html", runs=await c.call(views.run_list, c.ws))


@router.get("/runs/{pipeline}", include_in_schema=False)
async def timeline_page(request: Request, pipeline: str, run: str | None = None) -> HTMLResponse:
    """A run's security timeline."""
    c = _console(request)
    return render(request, "timeline.html",
                  tl=await c.call(views.run_timeline, c.ws, pipeline, run=run))


@router.get("/datasets", include_in_schema=False)
async def datasets_page(request: Request) -> HTMLResponse:
    """The dataset catalogue."""
    c = _console(request)
    return render(request, "datasets.html", datasets=await c.call(views.dataset_list, c.ws))


@router.get("/datasets/{name}", include_in_schema=False)
async def dataset_page(request: Request, name: str) -> HTMLResponse:
    """A dataset and its findings."""
    c = _console(request)
    return render(request, "dataset.html", d=await c.call(views.dataset_detail, c.ws, name))


@router.get("/jobs", include_in_schema=False)
async def jobs_page(request: Request) -> HTMLResponse:
    """Training jobs."""
    c = _console(request)
    return render(request, "jobs.html", jobs=await c.call(views.job_list, c.ws))


@router.get("/jobs/{job_id}", include_in_schema=False)
async def job_page(request: Request, job_id: str) -> HTMLResponse:
    """A job: the sandbox timeline, ε, losses."""
    c = _console(request)
    return render(request, "job.html", j=await c.call(views.job_detail, c.ws, job_id))


@router.get("/models", include_in_schema=False)
async def models_page(request: Request) -> HTMLResponse:
    """Models."""
    c = _console(request)
    return render(request, "models.html", models=await c.call(views.model_list, c.ws))


@router.get("/keys", include_in_schema=False)
async def keys_page(request: Request) -> HTMLResponse:
    """Key metadata."""
    c = _console(request)
    return render(request, "keys.html", keys=await c.call(views.key_list, c.ws))


@router.get("/gates", include_in_schema=False)
async def gates_page(request: Request) -> HTMLResponse:
    """Release-gate reports with their verdicts (each opens as the stage's HTML with plots)."""
    c = _console(request)
    return render(request, "gates.html", gates=await c.call(views.gate_list, c.ws))


_FILTERS = ("since", "until", "actor", "action", "resource", "outcome")


@router.get("/audit", include_in_schema=False)
async def audit_page(request: Request) -> HTMLResponse:
    """The audit log with filters, export links and per-entry verification."""
    c = _console(request)
    q = {k: request.query_params.get(k) or None for k in _FILTERS}
    s, u = parse_time(q["since"], field="since"), parse_time(q["until"], field="until")

    def read() -> list[dict[str, Any]]:
        return [views.entry_view(e) for e in c.ws.ledger.entries(
            since=s, until=u, actor=q["actor"], action=q["action"], resource=q["resource"],
            outcome=q["outcome"], limit=500)]
    return render(request, "audit.html", entries=await c.call(read), q=q)


@router.get("/audit/verify", include_in_schema=False)
async def verify_page(request: Request, seq: int) -> HTMLResponse:
    """Entry ``seq`` with its inclusion proof against the newest signed checkpoint, verified."""
    c = _console(request)
    return render(request, "verify.html", v=await c.call(_verify_entry, c, seq))


def _verify_entry(c: Console, seq: int) -> dict[str, Any]:
    from sealtune.errors import SealtuneError
    from sealtune.ledger import LedgerError, verify_global_inclusion_proof

    ledger = c.ws.ledger
    try:
        proof = ledger.global_inclusion_proofs([seq])[0]
    except LedgerError as exc:
        return {"seq": seq, "ok": False, "message": str(exc), "proof": None, "entry": None}
    try:
        verify_global_inclusion_proof(proof, [c.ws.ledger_verifier()], origin=c.ws.origin)
        ok, message = True, "the entry is in the log under the signed checkpoint below"
    except (SealtuneError, ValueError) as exc:
        ok, message = False, f"verification failed: {type(exc).__name__}"
    return {"seq": seq, "ok": ok, "message": message, "proof": json.loads(proof.to_json()),
            "entry": views.entry_view(ledger.entry(seq))}


@router.post("/audit/checkpoint", include_in_schema=False)
async def checkpoint_page(request: Request) -> HTMLResponse:
    """Sign a global checkpoint now and show it."""
    c = _console(request)
    note = await c.call(c.ws.seal_ledger)
    return render(request, "checkpoint.html", note=note)


@router.get("/attestation", include_in_schema=False)
async def attestation_page(request: Request) -> HTMLResponse:
    """Paste a report from ``GET /v1/attestation`` to see its evidence and checks."""
    return render(request, "attestation.html", a=None)


@router.post("/attestation", include_in_schema=False)
async def attestation_check(request: Request) -> HTMLResponse:
    """Verify a pasted report and show raw evidence, parsed fields and every check."""
    c = _console(request)
    form = await c.form(request)
    a = await c.call(attestation_view, form.get("report", "").encode("utf-8"),
                     allow_dev=form.get("allow_dev") == "on")
    return render(request, "attestation.html", a=a)
