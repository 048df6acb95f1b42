"""The release gate (``sealtune assess``): leakage, safety and model-file probes under a policy.

The public surface (loaded lazily: ``import sealtune.assess`` loads neither
torch, numpy nor matplotlib until a name that needs them is used):

* :func:`run_gate` (:mod:`sealtune.assess.gate`; :func:`model_digest` names a
  model as its report does): run every probe the
  policy asks for on a model, write ``report.json``, ``report.html`` and
  the signed envelope, seal them in the workspace and record
  ``assess.passed`` / ``assess.failed``; :class:`GateOutcome` (its
  ``raise_if_failed`` raises :class:`~sealtune.errors.GateFailed`, exit 4);
* the kept reports: :func:`list_assessments`, :func:`read_assessment`,
  :class:`Assessment` (:mod:`sealtune.assess.assessments`:
  ``<workspace>/assessments/<id>/``, sealed; the signed envelope for
  :func:`sealtune.evidence.verify_gate_report`);
* the policy: :class:`GatePolicy`, :func:`load_policy`, :func:`parse_policy`,
  :func:`default_policy_text`, :func:`write_default_policy`
  (:mod:`sealtune.assess.policy`);
* the report: :func:`load_report` (parse and validate ``report.json``),
  :func:`render_html`;
* the probes: :data:`PROBES`, :func:`register_probe`, :class:`Probe`,
  :class:`ProbeResult`, :class:`Measured` (:mod:`sealtune.assess.probes`);
* base models: :func:`add_base`, :func:`resolve_base`, :func:`list_bases`,
  :class:`BaseModel` (:mod:`sealtune.assess.bases`);
* the measures underneath: :mod:`sealtune.assess.canaries`,
  :mod:`sealtune.assess.exposure`, :mod:`sealtune.assess.stats`.

What the measures show: how much the model memorised and regurgitates
under these attacks, a lower bound on what an attacker can extract. What
they do not: that a model is private or safe. A pass means these attacks
failed; differential privacy's (ε, δ) guarantee is the proof of privacy,
and the gate tests that training delivers it in practice (a one-run lower
bound on ε above the claim is a DP bug and fails the gate). Reports carry
numbers, canary ids and record positions, never secrets or text. See
``docs/assess.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.assess.assessments import Assessment, list_assessments, read_assessment
    from sealtune.assess.bases import BaseModel, add_base, list_bases, resolve_base
    from sealtune.assess.gate import GateOutcome, model_digest, run_gate
    from sealtune.assess.html import render_html
    from sealtune.assess.policy import (
        GatePolicy,
        default_policy_text,
        load_policy,
        parse_policy,
        write_default_policy,
    )
    from sealtune.assess.probes import PROBES, Measured, Probe, ProbeResult, register_probe
    from sealtune.assess.report import load as load_report

__all__ = [
    "PROBES",
    "Assessment",
    "BaseModel",
    "GateOutcome",
    "GatePolicy",
    "Measured",
    "Probe",
    "ProbeResult",
    "add_base",
    "default_policy_text",
    "list_assessments",
    "list_bases",
    "load_policy",
    "load_report",
    "model_digest",
    "parse_policy",
    "read_assessment",
    "register_probe",
    "render_html",
    "resolve_base",
    "run_gate",
    "write_default_policy",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("Assessment", "list_assessments", "read_assessment"),
                    "sealtune.assess.assessments"),
    **dict.fromkeys(("BaseModel", "add_base", "list_bases", "resolve_base"),
                    "sealtune.assess.bases"),
    **dict.fromkeys(("GateOutcome", "model_digest", "run_gate"), "sealtune.assess.gate"),
    "render_html": "sealtune.assess.html",
    **dict.fromkeys(("GatePolicy", "default_policy_text", "load_policy", "parse_policy",
                     "write_default_policy"), "sealtune.assess.policy"),
    **dict.fromkeys(("PROBES", "Measured", "Probe", "ProbeResult", "register_probe"),
                    "sealtune.assess.probes"),
    "load_report": "sealtune.assess.report:load",
})
