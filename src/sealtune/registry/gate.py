"""The release gate's verdict for a registered model, found by model digest.

:func:`gate_digest` names the passing, verified gate report of a model
digest (for its provenance); :func:`require_passing_gate` is what promotion
calls: a passing report for that exact digest, signed by the workspace's
evidence key, else :class:`~sealtune.errors.GateFailed` (exit 4, ``gate:``).
Both use :func:`sealtune.evidence.gate.passing_gate_report`.

What this protects against: promoting a model nobody assessed, or whose
report is for another model, failed, or was edited. What it does not: judge
the report's probes (see :mod:`sealtune.evidence.gate`).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sealtune.errors import GateFailed, IntegrityError, SealtuneError
from sealtune.evidence.gate import PassingGate, passing_gate_report

if TYPE_CHECKING:
    from sealtune.workspace import Workspace


def _passing(ws: Workspace, model_digest: str) -> PassingGate:
    return passing_gate_report(ws, model_digest)


def gate_digest(ws: Workspace, model_digest: str) -> str | None:
    """``sha256:<hex>`` of the passing gate report for ``model_digest`` (hex), or None."""
    try:
        found = _passing(ws, "sha256:" + model_digest)
    except SealtuneError:
        return None
    return "sha256:" + hashlib.sha256(found.envelope).hexdigest()


def require_passing_gate(ws: Workspace, model_digest: str, *, what: str) -> str:
    """The digest of the verified passing gate report for ``model_digest`` (``sha256:<hex>``).

    Raises:
        GateFailed: none, or the newest does not verify (exit 4).
    """
    try:
        found = _passing(ws, model_digest)
    except IntegrityError as exc:
        raise GateFailed(f"{what} has no passing release-gate report for its digest "
                         f"{model_digest} ({exc.message})",
                         hint="run 'sealtune assess' on this model, or promote with "
                              "--unsafe-skip-gate (recorded)") from None
    return "sha256:" + hashlib.sha256(found.envelope).hexdigest()
