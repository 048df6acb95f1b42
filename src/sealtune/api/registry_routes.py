"""The model registry in the control plane: ``/api/v1/registry/...`` and the ``/registry`` page.

Reads call :func:`sealtune.registry.list_models`, :func:`~sealtune.registry.show_model`
and :func:`~sealtune.registry.history`; state changes call
:func:`~sealtune.registry.promote`, :func:`~sealtune.registry.rollback` and
:func:`~sealtune.registry.revoke`. Nothing of the registry is re-implemented.

Roles, twice: the guard lets only admins and operators reach a state change
(:data:`~sealtune.api.session.ROUTE_ROLES`), and the session's role must then
be allowed the action by the registry's own table
(:data:`sealtune.registry.access.PERMISSIONS`: promoting or rolling back
``prod`` is admin only). The registry call then runs as the caller's API key
id (:func:`sealtune.workspace.acting_as`): the registry authorises that id
against its grants, as it does a CLI user, and its ``registry.*`` ledger
events name it, so the ledger says which key promoted. Any refusal is a 403
and a ``console.denied`` ledger event; a done change is also a
``console.registry`` event (the key id and its session role). The page offers
each role only the stages it may act on.

A promotion without a passing gate report answers 409 with a message
starting ``gate:`` and changes nothing. The registry's ``unsafe_skip_gate``
is not offered here: skipping the gate stays a deliberate CLI act.

What this protects against: promotions, rollbacks and revocations by roles
the registry does not allow, cross-site forms (CSRF, like every console state
change), an unassessed model reaching a stage from the console. What it does
not: a key holder of an allowed role acting in bad faith; the ledger says who.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sealtune.api.app import Console, caller_of
from sealtune.errors import GateFailed, PolicyViolation
from sealtune.serve.auth import Denied

__all__ = ["router"]

router = APIRouter()


class StageBody(BaseModel):
    """``{"stage": "dev" | "staging" | "prod"}``."""

    stage: str = Field(max_length=32)


class RevokeBody(BaseModel):
    """``{"reason": "..."}`` (said in the ledger as its length only)."""

    reason: str = Field(max_length=500)


def _console(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


def _permitted(role: str | None, action: str) -> bool:
    from sealtune.registry.access import PERMISSIONS

    return role in PERMISSIONS[action]


def _stages(role: str | None, action: str) -> list[str]:
    """The stages ``role`` may ``action`` (promote, rollback) per the registry's table."""
    from sealtune.registry.access import stage_action
    from sealtune.registry.state import STAGES

    return [s for s in STAGES if _permitted(role, stage_action(action, s))]


def _as_caller(ws: Any, actor: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(ws, ...)`` with the workspace's actor set to the caller's key id."""
    from sealtune.workspace import acting_as

    with acting_as(actor):
        return fn(ws, *args, **kwargs)


def _models(c: Console) -> list[dict[str, Any]]:
    from sealtune.registry import list_models

    by_name: dict[str, dict[str, Any]] = {}
    for v in list_models(c.ws):
        name = v["ref"].split("@", 1)[0]
        by_name.setdefault(name, {"name": name, "versions": []})["versions"].append(v)
    return list(by_name.values())


def _show(c: Console, name: str) -> dict[str, Any]:
    from sealtune.registry import history, show_model

    model = show_model(c.ws, name)
    for v in model["versions"]:
        v["record"] = show_model(c.ws, v["ref"])["record"]
    return {**model, "history": history(c.ws, name)}


async def _change(request: Request, action: str, resource: str, fn: Any, *args: Any,
                  **kwargs: Any) -> dict[str, Any]:
    """Check the session's role against the registry's table, then call the registry."""
    c, caller = _console(request), caller_of(request)
    actor, role = caller.principal.caller, caller.principal.role
    if not _permitted(role, action):
        raise Denied(403, "registry_role", f"registry: {action.split(':')[0]} of {resource} "
                     f"is not allowed for role {role}", actor=actor)
    try:
        ref = await c.call(_as_caller, c.ws, actor, fn, *args, **kwargs)
    except PolicyViolation as exc:
        raise Denied(403, "registry_policy", exc.message, actor=actor) from None
    except GateFailed as exc:
        # 409 like other workspace states; the CLI's hint names --unsafe-skip-gate,
        # which the console does not offer.
        raise GateFailed("gate: " + exc.message, hint="run 'sealtune assess' on this "
                         "model, then promote again") from None
    c.audit.record("console.registry", actor=actor, resource=resource,
                   details={"action": action, "ref": str(ref), "role": role})
    return {"ref": str(ref)}


def _stage_action(action: str, stage: str) -> str:
    from sealtune.registry.access import stage_action

    return stage_action(action, stage)


# -- the API -------------------------------------------------------------------


@router.get("/api/v1/registry/models")
async def registry_models(request: Request) -> dict[str, Any]:
    """Every registered model: versions, stages, revocations, signature digests."""
    c = _console(request)
    return {"models": await c.call(_models, c)}


@router.get("/api/v1/registry/models/{name}")
async def registry_model(request: Request, name: str) -> dict[str, Any]:
    """One model: its versions with their provenance records, stages and history."""
    c = _console(request)
    return await c.call(_show, c, name)


@router.post("/api/v1/registry/models/{name}/versions/{n}/promote")
async def registry_promote(request: Request, name: str, n: int, body: StageBody
                           ) -> dict[str, Any]:
    """Point ``stage`` at ``NAME@vN`` (needs a passing gate report: else 409 ``gate:``)."""
    from sealtune.registry import promote

    return await _change(request, _stage_action("promote", body.stage), f"{name}@v{n}",
                         promote, f"{name}@v{n}", stage=body.stage)


@router.post("/api/v1/registry/models/{name}/rollback")
async def registry_rollback(request: Request, name: str, body: StageBody) -> dict[str, Any]:
    """Move ``stage`` of ``name`` back to its previous promoted, non-revoked version."""
    from sealtune.registry import rollback

    return await _change(request, _stage_action("rollback", body.stage),
                         f"{name}@{body.stage}", rollback, name, stage=body.stage)


@router.post("/api/v1/registry/models/{name}/versions/{n}/revoke")
async def registry_revoke(request: Request, name: str, n: int, body: RevokeBody
                          ) -> dict[str, Any]:
    """Revoke ``NAME@vN`` for good (a reason is required)."""
    from sealtune.registry import revoke

    return await _change(request, "revoke", f"{name}@v{n}", revoke, f"{name}@v{n}",
                         reason=body.reason)


# -- the page ------------------------------------------------------------------


@router.get("/registry", include_in_schema=False)
async def registry_page(request: Request) -> HTMLResponse:
    """Models with versions, stages and signatures; actions for the roles allowed."""
    from sealtune.api.pages import render

    c = _console(request)
    role = caller_of(request).principal.role
    return render(request, "registry.html", models=await c.call(_models, c),
                  promote_stages=_stages(role, "promote"),
                  rollback_stages=_stages(role, "rollback"),
                  can_promote=_permitted(role, "promote"),
                  can_rollback=_permitted(role, "rollback"),
                  can_revoke=_permitted(role, "revoke"), message=None)


async def _page_change(request: Request, action: str, resource: str, fn: Any, *args: Any,
                       **kwargs: Any) -> Response:
    await _change(request, action, resource, fn, *args, **kwargs)  # errors: error pages
    return RedirectResponse("/registry", status_code=303)


@router.post("/registry/{name}/versions/{n}/promote", include_in_schema=False)
async def registry_promote_form(request: Request, name: str, n: int) -> Response:
    """The promote form."""
    from sealtune.registry import promote

    stage = (await _console(request).form(request)).get("stage", "")
    return await _page_change(request, _stage_action("promote", stage), f"{name}@v{n}",
                              promote, f"{name}@v{n}", stage=stage)


@router.post("/registry/{name}/rollback", include_in_schema=False)
async def registry_rollback_form(request: Request, name: str) -> Response:
    """The roll-back form."""
    from sealtune.registry import rollback

    stage = (await _console(request).form(request)).get("stage", "")
    return await _page_change(request, _stage_action("rollback", stage), f"{name}@{stage}",
                              rollback, name, stage=stage)


@router.post("/registry/{name}/versions/{n}/revoke", include_in_schema=False)
async def registry_revoke_form(request: Request, name: str, n: int) -> Response:
    """The revoke form."""
    from sealtune.registry import revoke

    reason = (await _console(request).form(request)).get("reason", "")
    return await _page_change(request, "revoke", f"{name}@v{n}", revoke, f"{name}@v{n}",
                              reason=reason)
