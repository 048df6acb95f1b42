"""The release gate: run the policy's probes on a model, write the report, seal, sign, record.

:func:`run_gate` is what ``sealtune assess MODEL --policy FILE --out DIR``
calls:

1. resolve the model and its base (:mod:`sealtune.assess.target`) and name
   the model by its digest (as attestation measures it; an adapter with its
   base);
2. run the file probes here, on the files alone (nothing is loaded), then,
   only if the files passed, the other probes inside the training sandbox
   (:mod:`sealtune.assess.sandboxed`), and judge every measurement against
   the policy (:mod:`sealtune.assess.probes`); a probe the policy turned
   off is listed as ``off``, one whose needs are missing as ``skipped`` (a
   required one fails the gate);
3. write ``DIR/report.json`` (:mod:`sealtune.assess.report`),
   ``DIR/report.html`` (:mod:`sealtune.assess.html`) and
   ``DIR/report.dsse.json`` (the report signed by the caller's ``sign``,
   a DSSE envelope from :mod:`sealtune.evidence.gate`), each atomically;
4. seal the report and its envelope into
   ``<workspace>/assessments/<id>/`` with an index (``assessment.json``:
   ids, digests, verdict), and record ``assess.passed`` or
   ``assess.failed`` in the audit log with the report's SHA-256, the model
   digest and the policy digest.

The caller raises :class:`~sealtune.errors.GateFailed` (exit 4) with
:meth:`GateOutcome.raise_if_failed` after printing what it wants.

What this protects against: a report edited after the fact (its digest is
in the hash-chained, checkpointed ledger, its bytes sealed in the workspace
and signed by the evidence key), a report that names a model loosely (by
digest only), a model that is loaded before its files are checked. What it
does not: see ``docs/assess.md``: a pass is a lower bound on what these
attacks achieved, not a proof of privacy or safety.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.assess.assessments import ASSESSMENTS
from sealtune.assess.files import PlainTree, adapter_digest, tree_digest
from sealtune.assess.probes import PROBES, ProbeContext, ProbeResult, skipped, verdict_of
from sealtune.assess.probes.base import runs_in_sandbox
from sealtune.assess.target import Target, resolve_target
from sealtune.errors import GateFailed

if TYPE_CHECKING:
    from sealtune.assess.policy import GatePolicy
    from sealtune.workspace import Workspace

#: Signs report bytes; returns (DSSE envelope bytes, the signing key's id).
Signer = Callable[[bytes], tuple[bytes, str]]
_FILES_FAILED = "not run: the model files failed their scan"


@dataclass(frozen=True)
class GateOutcome:
    """A finished gate run: where the report went, and what it says."""

    id: str
    verdict: str
    failed: tuple[str, ...]
    model_digest: str
    report_sha256: str
    keyid: str
    report: Path
    html: Path
    envelope: Path
    results: tuple[ProbeResult, ...]

    def raise_if_failed(self) -> None:
        """Raise :class:`GateFailed` (exit 4) unless the gate passed."""
        if self.verdict != "pass":
            raise GateFailed(f"the model did not pass the release gate: "
                             f"{', '.join(self.failed)} failed (report {self.report})",
                             hint="read report.html; a failed probe's figures and "
                                  "thresholds are in report.json")


def run_gate(ws: Workspace, *, model: str, policy: GatePolicy, out: Path, sign: Signer,
             base: str | None = None, threads: int | None = None,
             timeout: float | None = None, bwrap: str = "bwrap",
             warn: bool = True) -> GateOutcome:
    """Assess ``model`` against ``policy``; write, seal, sign and record the report.

    Args:
        ws: the workspace (its keys open sealed models; its ledger records the outcome).
        model: a workspace model name or a model directory.
        policy: the checked gate policy.
        out: the directory for report.json, report.html and report.dsse.json.
        sign: signs the report's bytes (the CLI passes the workspace's evidence key).
        base: a registered base name or a base directory (default: the one the
            model's training record names).
        threads: torch threads in the sandbox.
        timeout: seconds after which the sandbox is destroyed.
        bwrap: the bubblewrap executable.
        warn: warn when the base is an unpinned directory (the report says
            ``pinned: false`` either way, and the audit log records ``base.unpinned``).

    Raises:
        ConfigError, UsageError: no such model, an adapter without base, bad inputs.
        IntegrityError: a base or dataset differs from the training record, a model
            changed during the run.
        SandboxUnavailableError, AssessError: the sandboxed probes could not run.
    """
    target = resolve_target(ws, model, base=base, warn=warn)
    own, digest = _digests(target)
    results = _results(ws, target, policy, own_digest=own, threads=threads,
                       timeout=timeout, bwrap=bwrap)
    doc = _document(target, policy, results, digest)
    return _publish(ws, doc, results, out=out, sign=sign)


def _digests(target: Target) -> tuple[str, str]:
    """The model's own tree digest (hex), and the digest it is named by (with its base)."""
    own = tree_digest(target.tree)
    if target.adapter and target.base is not None:
        return own, "sha256:" + adapter_digest(own, tree_digest(PlainTree(target.base.path)))
    return own, "sha256:" + own


def model_digest(ws: Workspace, model: str, *, base: str | None = None) -> str:
    """The digest a gate report names ``model`` by (what a release looks the report up by).

    ``sha256:`` over its files' plaintext digests, as the server attests it
    (:func:`sealtune.serve.model.model_digest`); an adapter with its base
    (``base``, else the one its training record names), as
    :func:`sealtune.serve.model.adapter_digest` does.

    Raises:
        ConfigError: no such model. IntegrityError: a base other than the trained one.
    """
    return _digests(resolve_target(ws, model, base=base, warn=False))[1]


def _results(ws: Workspace, target: Target, policy: GatePolicy, *, own_digest: str,
             threads: int | None, timeout: float | None, bwrap: str) -> list[ProbeResult]:
    """Every registered probe's result, in registry order."""
    base_files = None if target.base is None else PlainTree(target.base.path)
    done: dict[str, ProbeResult] = {}
    for name, probe in PROBES.items():
        section = policy.probes[name]
        if section.run == "off":
            done[name] = ProbeResult(name=name, verdict="off", reason="turned off by the policy")
        elif not runs_in_sandbox(probe):
            ctx = ProbeContext(files=target.tree, base_files=base_files)
            done[name] = _judge(name, probe.measure(ctx, section.settings), policy)
    files_ok = all(r.verdict in ("pass", "off") for r in done.values())
    wanted = _sandbox_probes(target, policy, done, files_ok=files_ok)
    if wanted:
        from sealtune.assess.sandboxed import measure_in_sandbox

        measured = measure_in_sandbox(ws, target, wanted, model_digest=own_digest,
                                      threads=threads, timeout=timeout, bwrap=bwrap)
        for name in wanted:
            done[name] = _judge(name, measured.get(name), policy)
    return [done[name] for name in PROBES]


def _available(target: Target) -> frozenset[str]:
    """What the sandbox will have, known before it starts (from the training record)."""
    have = {"model": True, "base": target.base is not None,
            "records": target.dataset is not None, "findings": target.dataset is not None,
            "heldout": target.dataset is not None and bool(target.val_size),
            "canaries": target.canaries is not None, "dp_claim": target.dp is not None}
    return frozenset(k for k, v in have.items() if v)


def _sandbox_probes(target: Target, policy: GatePolicy, done: dict[str, ProbeResult], *,
                    files_ok: bool) -> dict[str, Mapping[str, Any]]:
    """The probes to measure in the sandbox; the others get their ``skipped`` result here."""
    have = _available(target)
    wanted: dict[str, Mapping[str, Any]] = {}
    for name, probe in PROBES.items():
        if name in done:
            continue
        section = policy.probes[name]
        missing = sorted(probe.needs - have)
        if not files_ok:
            done[name] = skipped(name, _FILES_FAILED, required=section.required)
        elif missing:
            done[name] = skipped(name, "not run: needs " + ", ".join(missing),
                                 required=section.required)
        else:
            wanted[name] = dict(section.settings)
    return wanted


def _judge(name: str, measured: Any, policy: GatePolicy) -> ProbeResult:
    section = policy.probes[name]
    if measured is None or measured.skipped is not None:
        reason = "not run: " + (measured.skipped.replace("_", " ") if measured else "no data")
        return skipped(name, reason, required=section.required)
    result = PROBES[name].judge(measured, section.settings)
    return ProbeResult(**{**result.__dict__, "required": section.required})


def _document(target: Target, policy: GatePolicy, results: list[ProbeResult],
              digest: str) -> dict[str, Any]:
    from sealtune import __version__

    verdict, failed = verdict_of(results)
    now = datetime.now(UTC)
    base = target.base
    return {
        "format": "sealtune.gate-report/v1",
        "id": now.strftime("assess-%Y%m%d-%H%M%S-") + secrets.token_hex(3),
        "created": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "sealtune": __version__, "verdict": verdict, "failed": failed,
        "model": {"name": target.name, "source": target.source, "digest": digest,
                  "adapter": target.adapter, "weights_sha256": target.weights_sha256,
                  "job": target.job},
        "base": None if base is None else {
            "name": base.name, "digest": base.digest, "pinned": base.pinned,
            "licence": base.licence},
        "policy": {"source": _token(Path(policy.source).name), "digest": policy.digest},
        "probes": [r.to_dict() for r in results]}


def _token(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.,:/+=-]", "_", text)[:128] or "policy"


def _publish(ws: Workspace, doc: dict[str, Any], results: list[ProbeResult], *, out: Path,
             sign: Signer) -> GateOutcome:
    """Write the report, its page and its envelope; seal them; record the outcome."""
    from sealtune.assess.html import render_html
    from sealtune.assess.report import render
    from sealtune.outputs import write_atomic

    raw = render(doc)
    envelope, keyid = sign(raw)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = {"report": out / "report.json", "html": out / "report.html",
             "envelope": out / "report.dsse.json"}
    write_atomic(paths["report"], raw, mode=0o644)
    write_atomic(paths["html"], render_html(doc).encode("utf-8"), mode=0o644)
    write_atomic(paths["envelope"], envelope, mode=0o644)
    sha = "sha256:" + hashlib.sha256(raw).hexdigest()
    _seal(ws, doc, raw, envelope, sha=sha, keyid=keyid)
    return GateOutcome(id=doc["id"], verdict=doc["verdict"], failed=tuple(doc["failed"]),
                       model_digest=doc["model"]["digest"], report_sha256=sha, keyid=keyid,
                       results=tuple(results), **paths)


def _seal(ws: Workspace, doc: dict[str, Any], raw: bytes, envelope: bytes, *, sha: str,
          keyid: str) -> None:
    """Seal the report and envelope into the workspace, index them, record the verdict."""
    from sealtune.keys.sealing import seal_bytes
    from sealtune.outputs import write_atomic

    def seal_small(path: Path, data: bytes) -> str:
        return "content-sha256:" + seal_bytes(path, data, keys=ws.keys,
                                              key_names=keys).content_sha256

    root = ws.area(ASSESSMENTS) / doc["id"]
    root.mkdir(mode=0o700, parents=True)
    keys = [ws.config.default_key]
    index = {"format": "sealtune.assessment/v1", "id": doc["id"], "created": doc["created"],
             "model": doc["model"], "verdict": doc["verdict"], "failed": doc["failed"],
             "policy": doc["policy"]["digest"], "report_sha256": sha, "keyid": keyid,
             "files": {"report.json.sealed": seal_small(root / "report.json.sealed", raw),
                       "report.dsse.json.sealed": seal_small(root / "report.dsse.json.sealed",
                                                             envelope)}}
    write_atomic(root / "assessment.json", (json.dumps(index, indent=2, sort_keys=True)
                                             + "\n").encode())
    model = doc["model"]
    ws.audit(f"assess.{'passed' if doc['verdict'] == 'pass' else 'failed'}",
             f"model/{model['name'] or model['digest']}",
             outcome="success" if doc["verdict"] == "pass" else "failure",
             details={"assessment": doc["id"], "report_sha256": sha,
                      "model_digest": model["digest"], "policy": doc["policy"]["digest"],
                      "failed": doc["failed"], "keyid": keyid})
