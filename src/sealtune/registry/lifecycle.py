"""Stages, rollback, revocation and grants: every change a signed snapshot and a ledger event.

Stages (``dev``, ``staging``, ``prod``) are aliases to versions. Promotion
to any stage needs a passing release-gate report for the version's exact
model digest (:mod:`sealtune.registry.gate`) unless ``unsafe_skip_gate``
(warned, recorded as ``registry.unsafe_skip_gate``); each stage keeps its
promotion history, so :func:`rollback` moves the alias back to the previous
promoted version that is not revoked. :func:`revoke` is permanent: a revoked
version cannot be promoted, served or un-revoked, and an alias pointing at
it is moved back (or removed when no earlier version remains).

What this protects against: promoting an unassessed model, a revocation
undone by editing the catalogue (the snapshot is signed), changes by a role
that may not make them. What it does not: stop a holder of the keyring from
signing any state (see :mod:`sealtune.registry.access`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from sealtune.errors import UsageError
from sealtune.registry.access import authorize, check_role, stage_action
from sealtune.registry.state import STAGES, Ref, Registry

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

SKIP_GATE_WARNING = ("--unsafe-skip-gate: promoting without a passing release-gate report; "
                     "recorded in the audit log as registry.unsafe_skip_gate")


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r}", hint=f"use one of {', '.join(STAGES)}")
    return stage


def promote(ws: Workspace, text: str, *, stage: str, unsafe_skip_gate: bool = False) -> Ref:
    """Point ``stage`` of the model at version ``text`` (``NAME@vN`` or ``NAME@STAGE``).

    Raises:
        GateFailed: no passing gate report for its digest (exit 4).
        UsageError: unknown version or stage, or the version is revoked.
        PolicyViolation: the actor's role may not (recorded).
    """
    from sealtune.registry.gate import require_passing_gate

    _check_stage(stage)
    reg = Registry(ws)
    try:
        snap = reg.snapshot()
        ref = reg.resolve(text, snap)
        authorize(ws, stage_action("promote", stage), str(ref), snap.state)
        model = snap.state["models"][ref.name]
        if str(ref.version) in model["revoked"]:
            raise UsageError(f"{ref} is revoked and cannot be promoted",
                             hint="register and promote another version")
        digest = model["versions"][str(ref.version)]["model_digest"]
        if unsafe_skip_gate:
            warnings.warn(SKIP_GATE_WARNING, UserWarning, stacklevel=2)
            ws.audit("registry.unsafe_skip_gate", str(ref),
                     details={"stage": stage, "model_digest": digest})
            gate = None
        else:
            gate = require_passing_gate(ws, digest, what=str(ref))

        def change(state: dict[str, Any], db: Any) -> None:
            m = state["models"][ref.name]
            m["stages"][stage] = ref.version
            m["promotions"].setdefault(stage, []).append(
                {"version": ref.version, "gate_report": gate})

        new = reg.commit(change)
    finally:
        reg.close()
    ws.audit("registry.promote", str(ref), details={"stage": stage, "gate_report": gate,
                                                    "snapshot": new.version})
    return ref


def _previous(model: dict[str, Any], stage: str, current: int | None) -> int | None:
    """The newest promoted version before ``current`` at ``stage`` that is not revoked."""
    history = [p["version"] for p in model["promotions"].get(stage, [])]
    while history and history[-1] == current:
        history.pop()
    for version in reversed(history):
        if str(version) not in model["revoked"] and version != current:
            return int(version)
    return None


def rollback(ws: Workspace, name: str, *, stage: str) -> Ref:
    """Move ``stage`` of ``name`` back to its previous promoted, non-revoked version.

    Raises:
        UsageError: no such model, stage not set, or nothing to roll back to.
        PolicyViolation: the actor's role may not (recorded).
    """
    _check_stage(stage)
    reg = Registry(ws)
    try:
        snap = reg.snapshot()
        current = reg.resolve(f"{name}@{stage}", snap)
        authorize(ws, stage_action("rollback", stage), f"{name}@{stage}", snap.state)
        target = _previous(snap.state["models"][name], stage, current.version)
        if target is None:
            raise UsageError(f"{name}@{stage} has no earlier version to roll back to",
                             hint="promote another version instead")

        def change(state: dict[str, Any], db: Any) -> None:
            m = state["models"][name]
            m["stages"][stage] = target
            m["promotions"][stage].append({"version": target, "rollback_from": current.version})

        new = reg.commit(change)
    finally:
        reg.close()
    ref = Ref(name, target)
    ws.audit("registry.rollback", f"{name}@{stage}",
             details={"from": current.version, "to": target, "snapshot": new.version})
    return ref


def revoke(ws: Workspace, text: str, *, reason: str) -> Ref:
    """Revoke version ``text`` permanently; aliases on it move back (or are removed).

    Raises:
        UsageError: unknown version, empty reason, or already revoked.
        PolicyViolation: the actor's role may not (recorded).
    """
    if not reason.strip() or len(reason) > 500:
        raise UsageError("--reason must say why, in at most 500 characters")
    reg = Registry(ws)
    try:
        snap = reg.snapshot()
        ref = reg.resolve(text, snap)
        authorize(ws, "revoke", str(ref), snap.state)
        if str(ref.version) in snap.state["models"][ref.name]["revoked"]:
            raise UsageError(f"{ref} is already revoked")
        moved: dict[str, int | None] = {}

        def change(state: dict[str, Any], db: Any) -> None:
            from sealtune.train.jobs.records import now

            m = state["models"][ref.name]
            m["revoked"][str(ref.version)] = {"reason": reason, "at": now(), "by": ws.actor}
            for stage, version in list(m["stages"].items()):
                if version == ref.version:
                    moved[stage] = _previous(m, stage, version)
                    if moved[stage] is None:
                        del m["stages"][stage]
                    else:
                        m["stages"][stage] = moved[stage]

        new = reg.commit(change)
    finally:
        reg.close()
    ws.audit("registry.revoke", str(ref), details={"reason_chars": len(reason),
                                                   "stages_moved": moved,
                                                   "snapshot": new.version})
    return ref


def grant(ws: Workspace, actor: str, role: str) -> None:
    """Give ``actor`` the registry role ``role`` (admin only; recorded)."""
    check_role(role)
    reg = Registry(ws)
    try:
        snap = reg.snapshot()
        authorize(ws, "grant", f"role:{actor}", snap.state)

        def change(state: dict[str, Any], db: Any) -> None:
            roles = state.setdefault("roles", {})
            if not roles:
                roles[ws.actor] = "admin"  # the first grant keeps its grantor admin
            roles[actor] = role

        new = reg.commit(change)
    finally:
        reg.close()
    ws.audit("registry.grant", f"role:{actor}", details={"role": role, "snapshot": new.version})


def refresh(ws: Workspace) -> int:
    """Re-sign the current state with a new expiry; the new snapshot version."""
    reg = Registry(ws)
    try:
        authorize(ws, "refresh", "registry", reg.snapshot().state)
        new = reg.commit(lambda state, db: None)
    finally:
        reg.close()
    ws.audit("registry.refresh", "registry", details={"snapshot": new.version})
    return new.version
