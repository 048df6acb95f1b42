"""OpenAI-compatible fine-tuning routes (``/v1/files``, ``/v1/fine_tuning/jobs``).

Not served yet: the router is empty, and :data:`sealtune.api.session.ROUTE_ROLES`
already names the roles of its routes (operator and admin).

What this protects against: nothing yet. What it does not: see ``docs/console.md``.
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()
