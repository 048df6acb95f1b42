"""Gate reports as signed evidence: a DSSE envelope over ``report.json``, and its check.

:func:`gate_report_signer` returns the ``sign`` callback
:func:`sealtune.assess.run_gate` takes: it signs the report's exact bytes
with the workspace's evidence key (:func:`~sealtune.evidence.signer.evidence_signer`)
in a DSSE envelope of payload type :data:`PAYLOAD_TYPE` (not in-toto's:
a gate report is not an attestation statement, and a distinct type keeps
one from being accepted as the other). :func:`verify_gate_report` is what
a release step (the registry) calls: the envelope must be signed by a
pinned key, its payload must be a valid report (:func:`sealtune.assess.report.load`),
name exactly the given model digest, and (unless asked otherwise) pass.
:func:`passing_gate_report` finds such a report among the workspace's kept
assessments (:mod:`sealtune.assess.assessments`) for one model digest.

What this protects against: an edited report (the signature covers every
byte), a report for another model presented for this one (the digest must
match), a failing report presented as passing, a report signed by a key
nobody pinned. What it does not: say that the probes measured the truth;
the pinned key vouches that this workspace's gate produced the report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError
from sealtune.evidence.dsse import open_envelope, sign

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from sealtune.workspace import Workspace

PAYLOAD_TYPE = "application/vnd.sealtune.gate-report+json"


def gate_report_signer(ws: Workspace) -> Callable[[bytes], tuple[bytes, str]]:
    """A callback signing report bytes with the workspace's evidence key.

    Returns ``(envelope bytes, key id)``; the key is created on first use (audited).
    """
    from sealtune.evidence.signer import evidence_signer

    key = evidence_signer(ws)

    def signer(report: bytes) -> tuple[bytes, str]:
        return sign(report, payload_type=PAYLOAD_TYPE, signer=key.sign,
                    signer_keyid=key.keyid), key.keyid

    return signer


def verify_gate_report(envelope: bytes, keys: Iterable[Ed25519PublicKey], *,
                       model_digest: str, require_pass: bool = True,
                       what: str = "report.dsse.json") -> dict[str, Any]:
    """Check a signed gate report for one model; return the report document.

    Args:
        envelope: the DSSE envelope's bytes.
        keys: the pinned evidence public keys.
        model_digest: ``sha256:<hex>`` of the model that is to be released.
        require_pass: refuse a report whose verdict is not ``pass``.
        what: the file name, for messages.

    Raises:
        IntegrityError: not signed by a pinned key, not a valid report, another
            model, or (with ``require_pass``) a failing one.
    """
    return _verified(envelope, keys, model_digest=model_digest, require_pass=require_pass,
                     what=what)[1]


def _verified(envelope: bytes, keys: Iterable[Ed25519PublicKey], *, model_digest: str,
              require_pass: bool, what: str) -> tuple[bytes, dict[str, Any], str]:
    """The report's bytes, document and signing key id, checked as :func:`verify_gate_report`."""
    from sealtune.assess.report import load

    payload, keyid = open_envelope(envelope, keys, what=what, payload_type=PAYLOAD_TYPE)
    doc = load(payload, what=what)
    if doc["model"]["digest"] != model_digest:
        raise IntegrityError(f"{what}: the report is for another model",
                             hint="assess this exact model with 'sealtune assess'")
    if require_pass and doc["verdict"] != "pass":
        raise IntegrityError(f"{what}: the model failed the release gate "
                             f"({', '.join(doc['failed'])})",
                             hint="a model is released only with a passing report")
    return payload, doc, keyid


@dataclass(frozen=True)
class PassingGate:
    """A verified passing gate report for one model (what :func:`passing_gate_report` found).

    Attributes:
        assessment: the report's id (``<workspace>/assessments/<id>/``).
        document: the verified report (``sealtune.gate-report/v1``).
        envelope: the signed DSSE envelope's bytes (for an evidence bundle).
        keyid: the id of the pinned key that signed it.
    """

    assessment: str
    document: dict[str, Any]
    envelope: bytes
    keyid: str


def passing_gate_report(ws: Workspace, model_digest: str, *,
                        keys: Iterable[Ed25519PublicKey] | None = None) -> PassingGate:
    """The newest passing gate report for ``model_digest`` kept in ``ws``, verified.

    Args:
        ws: the workspace whose ``assessments/`` are searched.
        model_digest: ``sha256:<hex>``, as :func:`sealtune.serve.model.model_digest`
            measures the model (an adapter: with its base, as attestation does).
        keys: the pinned evidence public keys; default: this workspace's own
            evidence key (a release in another trust domain passes its pins).

    Raises:
        IntegrityError: no passing report for this digest, or the newest one that
            claims to pass does not verify (it is not skipped: fail closed).
    """
    from sealtune.assess.assessments import list_assessments
    from sealtune.evidence.signer import evidence_signer

    pinned = list(keys) if keys is not None else [evidence_signer(ws).public_key]
    passing = [a for a in list_assessments(ws, model_digest=model_digest)
               if a.verdict == "pass"]
    if not passing:
        raise IntegrityError(f"no passing release-gate report for model {model_digest}",
                             hint="run 'sealtune assess' on this exact model")
    newest = passing[0]
    envelope = newest.envelope(ws)
    payload, doc, keyid = _verified(envelope, pinned, model_digest=model_digest,
                                    require_pass=True, what=f"assessment {newest.id}")
    if "sha256:" + hashlib.sha256(payload).hexdigest() != newest.index["report_sha256"] \
            or doc["id"] != newest.id:
        raise IntegrityError(f"assessment {newest.id}: the signed report is not the one "
                             "its index records",
                             hint="restore the assessment folder from a trusted copy")
    return PassingGate(newest.id, doc, envelope, keyid)
