"""The ``/api/v1`` routes: datasets, jobs, runs, models, keys, the audit log, attestation.

Each route calls :mod:`sealtune.api.views` (the stage APIs, cut down to an
allow-list) or the ledger, and answers JSON. The audit export streams: it
pages through the ledger and never holds the whole log in memory. Gate
reports and registry versions join here as ``/api/v1/gates/...`` and
``/api/v1/models/{name}/versions/...`` once those stages land.

What this protects against: the same as :mod:`sealtune.api.views` (nothing
but names, ids, counts, types, digests and numbers leaves) and unbounded
responses (entry listings are capped at :data:`MAX_ENTRIES` per page).
What it does not: an auditor may export the whole audit log; that is its job.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from sealtune.api import views
from sealtune.api.app import Console, caller_of
from sealtune.errors import UsageError

__all__ = ["MAX_ENTRIES", "router", "stream_export"]

router = APIRouter(prefix="/api/v1")
MAX_ENTRIES = 1000
_EXPORT_BATCH = 2000
_REPORT_LIMIT = 1 << 20


def _console(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


def parse_time(text: str | None, *, field: str) -> datetime | None:
    """An ISO 8601 time from a query parameter (naive means UTC).

    Raises:
        UsageError: naming the parameter.
    """
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{field}: not an ISO 8601 time",
                         hint="e.g. 2026-01-31 or 2026-01-31T12:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@router.get("/me")
async def me(request: Request) -> dict[str, Any]:
    """Who is calling: key id and role."""
    p = caller_of(request).principal
    return {"key_id": p.caller, "role": p.role, "via": p.via}


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> dict[str, Any]:
    """The generated OpenAPI schema (authenticated callers only)."""
    return request.app.openapi()  # type: ignore[no-any-return]


@router.get("/models")
async def models(request: Request) -> list[dict[str, Any]]:
    """Fine-tuned models in the workspace."""
    c = _console(request)
    return await c.call(views.model_list, c.ws)


@router.get("/models/{name}")
async def model(request: Request, name: str) -> dict[str, Any]:
    """One model."""
    c = _console(request)
    return await c.call(views.model_detail, c.ws, name)


@router.get("/datasets")
async def datasets(request: Request) -> list[dict[str, Any]]:
    """The dataset catalogue."""
    c = _console(request)
    return await c.call(views.dataset_list, c.ws)


@router.get("/datasets/{name}")
async def dataset(request: Request, name: str) -> dict[str, Any]:
    """One dataset: digests, sealed files checked, keys, findings as counts and types."""
    c = _console(request)
    return await c.call(views.dataset_detail, c.ws, name)


@router.get("/datasets/{name}/bom")
async def dataset_bom(request: Request, name: str) -> Response:
    """The dataset's CycloneDX ML-BOM as stored (provenance and digests)."""
    from sealtune.data import export_bom

    c = _console(request)
    text = await c.call(export_bom, c.ws, name)
    return Response(text, media_type="application/vnd.cyclonedx+json", headers={
        "Content-Disposition": f'attachment; filename="{name}.cdx.json"'})


@router.get("/jobs")
async def jobs(request: Request) -> list[dict[str, Any]]:
    """Training jobs."""
    c = _console(request)
    return await c.call(views.job_list, c.ws)


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: str) -> dict[str, Any]:
    """One job: sandbox timeline, metrics, ε, per-epoch losses."""
    c = _console(request)
    return await c.call(views.job_detail, c.ws, job_id)


@router.get("/runs")
async def runs(request: Request) -> list[dict[str, Any]]:
    """Pipeline runs seen in the audit log."""
    c = _console(request)
    return await c.call(views.run_list, c.ws)


@router.get("/runs/{pipeline}/timeline")
async def timeline(request: Request, pipeline: str,
                   run: str | None = None) -> dict[str, Any]:
    """The security timeline of a pipeline's newest run (or ``run``)."""
    c = _console(request)
    return await c.call(views.run_timeline, c.ws, pipeline, run=run)


@router.get("/keys")
async def keys(request: Request) -> list[dict[str, Any]]:
    """Key metadata (never key material)."""
    c = _console(request)
    return await c.call(views.key_list, c.ws)


@router.get("/gates")
async def gates(request: Request) -> list[dict[str, Any]]:
    """Release-gate reports, newest first."""
    c = _console(request)
    return await c.call(views.gate_list, c.ws)


@router.get("/gates/{assessment_id}")
async def gate(request: Request, assessment_id: str) -> dict[str, Any]:
    """One gate report (``sealtune.gate-report/v1``, validated)."""
    c = _console(request)
    return await c.call(views.gate_report, c.ws, assessment_id)


@router.get("/gates/{assessment_id}/html")
async def gate_html(request: Request, assessment_id: str) -> Response:
    """The gate report as the stage renders it (its plots inline), under its own CSP."""
    from sealtune.assess import render_html
    from sealtune.assess.html import CSP as REPORT_CSP

    c = _console(request)
    doc = await c.call(views.gate_report, c.ws, assessment_id)
    return Response(render_html(doc), media_type="text/html; charset=utf-8", headers={
        "Content-Security-Policy": REPORT_CSP.rstrip("; ") + "; frame-ancestors 'none'"})


# -- the audit log -----------------------------------------------------------------


@router.get("/audit/entries")
async def audit_entries(
    request: Request, since: str | None = None, until: str | None = None,
    actor: str | None = None, action: str | None = None, resource: str | None = None,
    outcome: str | None = None, limit: int = Query(100, ge=1, le=MAX_ENTRIES),
) -> list[dict[str, Any]]:
    """Entries matching every filter (``since`` inclusive, ``until`` exclusive), oldest first."""
    c = _console(request)
    s, u = parse_time(since, field="since"), parse_time(until, field="until")

    def read() -> list[dict[str, Any]]:
        return [views.entry_view(e) for e in c.ws.ledger.entries(
            since=s, until=u, actor=actor, action=action, resource=resource, outcome=outcome,
            limit=limit)]
    return await c.call(read)


def stream_export(entries: Iterator[Any], fmt: Literal["jsonl", "csv"]) -> Iterator[bytes]:
    """The ledger's own export (:func:`sealtune.ledger.export_entries`), in batches.

    JSONL lines are the canonical leaves (hashes recomputable); CSV has one
    header row and formula-escaped cells.
    """
    from sealtune.ledger import export_entries

    first = True
    while True:
        batch = [e for _, e in zip(range(_EXPORT_BATCH), entries, strict=False)]
        if not batch:
            if first and fmt == "csv":  # an empty log still gets its header
                buf = io.StringIO(newline="")
                export_entries([], fmt, buf)
                yield buf.getvalue().encode("utf-8")
            return
        buf = io.StringIO(newline="")
        export_entries(batch, fmt, buf)
        text = buf.getvalue()
        if fmt == "csv" and not first:
            text = text.split("\r\n", 1)[1]
        first = False
        yield text.encode("utf-8")


@router.get("/audit/export")
async def audit_export(request: Request, format: str = "jsonl",
                       since: str | None = None, until: str | None = None) -> Response:
    """Stream the audit log as JSONL (canonical leaves) or CSV."""
    if format not in ("jsonl", "csv"):
        raise UsageError(f"format={format!r}", hint="use format=jsonl or format=csv")
    c = _console(request)
    s, u = parse_time(since, field="since"), parse_time(until, field="until")
    entries = c.ws.ledger.entries(since=s, until=u)
    c.audit.record("audit.export", actor=caller_of(request).principal.caller,
                   resource="ledger", details={"format": format, "via": "console"})
    media = "application/jsonl" if format == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(stream_export(entries, format), media_type=media,  # type: ignore[arg-type]
                             headers={"Content-Disposition":
                                      f'attachment; filename="audit.{format}"'})


@router.get("/audit/checkpoint")
async def audit_checkpoint(request: Request) -> dict[str, Any]:
    """The newest signed global checkpoint (C2SP note) and the verifier key to pin."""
    c = _console(request)

    def read() -> dict[str, Any]:
        return {"checkpoint": c.ws.ledger.anchors.latest_global_checkpoint(),
                "verifier_key": c.ws.ledger_signer().verifier_key, "origin": c.ws.origin}
    return await c.call(read)


@router.post("/audit/checkpoint")
async def audit_sign_checkpoint(request: Request) -> dict[str, Any]:
    """Sign a global checkpoint now (what ``sealtune audit checkpoint`` does)."""
    c = _console(request)
    note = await c.call(c.ws.seal_ledger)
    return {"checkpoint": note}


@router.get("/audit/proofs/inclusion/{seq}")
async def inclusion_proof(request: Request, seq: int) -> dict[str, Any]:
    """Entry ``seq``'s inclusion proofs (in its segment and in the global tree).

    Each proof is its exact JSON document as a string (``sealtune-inclusion-v1``,
    ``sealtune-global-inclusion-v1``): verifiers check those bytes, so they are not
    re-serialised.
    """
    c = _console(request)

    def read() -> dict[str, Any]:
        from sealtune.ledger import LedgerError

        try:
            segment = c.ws.ledger.inclusion_proof(seq).to_json()
            glob = c.ws.ledger.global_inclusion_proofs([seq])[0].to_json()
        except LedgerError as exc:
            raise UsageError(str(exc), hint="sign a checkpoint first, or pick another entry") \
                from None
        return {"seq": seq, "segment_proof": segment, "global_proof": glob}
    return await c.call(read)


@router.get("/audit/proofs/consistency")
async def consistency_proof(request: Request, segment: int, old_size: int,
                            new_size: int) -> dict[str, Any]:
    """Proof that ``segment`` at ``old_size`` is a prefix of it at ``new_size``."""
    c = _console(request)

    def read() -> dict[str, Any]:
        from sealtune.ledger import LedgerError

        try:
            proof = c.ws.ledger.consistency_proof(segment, old_size, new_size)
        except LedgerError as exc:
            raise UsageError(str(exc), hint="both sizes need signed checkpoints") from None
        return dict(json.loads(proof.to_json()))
    return await c.call(read)


# -- attestation --------------------------------------------------------------------


def attestation_view(raw: bytes, *, allow_dev: bool) -> dict[str, Any]:
    """A report's raw evidence (base64), parsed fields and the verifier's explanation."""
    from sealtune.attest import VerificationFailed, VerificationPolicy, verify_report
    from sealtune.attest.report import loads_report

    parsed = loads_report(raw)
    policy = VerificationPolicy()
    if allow_dev:
        policy = policy.unsafe_allowing_dev_attestation()
    try:
        result = verify_report(raw, policy=policy, now=datetime.now(UTC))
    except VerificationFailed as exc:
        result = exc.result
    return {"raw_base64": base64.b64encode(raw).decode("ascii"), "parsed": parsed,
            "verification": result.to_dict(), "dev_attestation_allowed": allow_dev}


@router.post("/attestation/verify")
async def attestation_verify(request: Request, allow_dev: bool = False) -> JSONResponse:
    """Verify an attestation report (the body, as ``GET /v1/attestation`` returned it)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _REPORT_LIMIT:
            raise UsageError("attestation report larger than 1 MiB",
                             hint="send the JSON report as returned by GET /v1/attestation")
    c = _console(request)
    return JSONResponse(await c.call(attestation_view, body, allow_dev=allow_dev))
