"""Who may change the registry: the server's roles (admin, operator, auditor, consumer).

The grants live in the signed registry snapshot (``state["roles"]``: actor
-> role), so an edited grant is caught like any other edit. A workspace whose
registry has no grants yet is single-user: its keyring holder acts as
``admin`` until the first grant; from then on an actor without a grant is a
``consumer``. Every denial raises :class:`~sealtune.errors.PolicyViolation`
and is a ``registry.denied`` ledger event.

What this protects against: an operator revoking or promoting to prod by
mistake, a consumer changing anything. What it does not: the actor's name is
``$SEALTUNE_ACTOR`` or the login name, and whoever holds the keyring
passphrase can sign a snapshot with any grants; roles separate duties among
honest users, they do not stop a keyring holder. A server acting for an
authenticated caller (the console) sets the actor to that caller's API key id
with :func:`sealtune.workspace.acting_as`, so its grant is the one checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sealtune.errors import PolicyViolation, UsageError

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

ROLES = ("admin", "operator", "auditor", "consumer")
#: action -> the roles allowed to do it (promote or roll back prod, grants: admin only).
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "register": ("admin", "operator"),
    "promote": ("admin", "operator"),
    "promote:prod": ("admin",),
    "rollback": ("admin", "operator"),
    "rollback:prod": ("admin",),
    "revoke": ("admin", "operator"),
    "refresh": ("admin", "operator"),
    "grant": ("admin",),
}


def role_of(state: dict[str, Any], actor: str) -> str:
    """``actor``'s role in the registry state (see the module docstring)."""
    roles: dict[str, str] = state.get("roles") or {}
    if not roles:
        return "admin"
    return roles.get(actor, "consumer")


def authorize(ws: Workspace, action: str, resource: str,
              state: dict[str, Any] | None = None) -> str:
    """The actor's role if it may do ``action``; else record the denial and raise.

    Raises:
        PolicyViolation: the role does not allow it.
    """
    if state is None:
        from sealtune.registry.state import Registry

        reg = Registry(ws)
        try:
            state = reg.snapshot().state
        finally:
            reg.close()
    role = role_of(state, ws.actor)
    if role not in PERMISSIONS[action]:
        ws.audit("registry.denied", resource, outcome="denied",
                 details={"action": action, "role": role})
        raise PolicyViolation(f"registry: {action} of {resource} is not allowed for role "
                              f"{role}", hint=f"ask an admin: allowed roles are "
                                              f"{', '.join(PERMISSIONS[action])}")
    return role


def stage_action(action: str, stage: str) -> str:
    """The :data:`PERMISSIONS` key of ``action`` (promote, rollback) at ``stage``."""
    return f"{action}:prod" if stage == "prod" else action


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`."""
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
    return role
