"""What the control plane shows: the stage APIs' records, cut down to what may leave.

Each function calls the same stage API as the CLI (``list_datasets``,
``show_dataset``, ``list_jobs``, ``show_job``, the key service, the ledger)
and keeps an allow-list of fields: names, ids, counts, types, digests,
times and numbers. Anything else in a record is dropped, so a field added to
a stage's record later stays inside until it is added here on purpose.

What this protects against: sample text, prompts, PII values (even masked
examples), key material and passphrases leaving through the API or the
console; the allow-lists are tested by planting unique values and searching
every response. What it does not: names that users chose (dataset, model and
pipeline names, input file names, actor names) are shown as given; the
audit log shows whatever the stages put in ledger entries, which carry ids,
names and digests by design (see ``docs/formats/ledger-v1.md``), not host
paths (a test crawls a real run for its directories). The run timeline also
hides a host path that an older ledger holds; the audit log and its export
are the ledger verbatim (their bytes are what its proofs cover).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sealtune.errors import UsageError

if TYPE_CHECKING:
    from sealtune.ledger import Entry
    from sealtune.workspace import Workspace

__all__ = [
    "dataset_detail",
    "dataset_list",
    "entry_view",
    "gate_list",
    "gate_report",
    "job_detail",
    "job_list",
    "key_list",
    "model_detail",
    "model_list",
    "run_list",
    "run_timeline",
]

_NUMBER = (int, float)
_JOB_FIELDS = ("id", "status", "out_name", "dataset", "sandboxed", "created", "updated",
               "resumed_job", "weights_sha256")
_SCREEN_FINDING = ("check", "record_id", "action")
_TRIGGER = ("fingerprint", "length", "kind", "carriers")
#: ledger actions that make up a run's security timeline (prefix match).
TIMELINE_ACTIONS = ("pipeline.", "sandbox.", "key.wrap", "key.unwrap", "data.ingest",
                    "train.", "assess.", "gate.", "registry.", "model.", "base.")


def _numbers(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep only the number, boolean and null values of a flat mapping."""
    return {str(k): v for k, v in (record or {}).items()
            if v is None or isinstance(v, bool | int | float)}


def _counts(record: Any) -> dict[str, Any]:
    """A nested mapping of counts: string keys, number leaves (anything else dropped)."""
    if not isinstance(record, Mapping):
        return {}
    out: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(v, Mapping):
            out[str(k)] = _counts(v)
        elif isinstance(v, _NUMBER):
            out[str(k)] = v
    return out


def _pick(record: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: record[k] for k in keys if k in record and not isinstance(record[k], dict | list)}


# -- datasets ------------------------------------------------------------------------


def dataset_list(ws: Workspace) -> list[dict[str, Any]]:
    """The dataset catalogue: name, creation time and counts."""
    from sealtune.data import list_datasets

    return [{"name": i.name, "created": i.created, "counts": _counts(i.counts),
             "format": str(i.manifest.get("input", {}).get("format", ""))}
            for i in list_datasets(ws)]


def dataset_detail(ws: Workspace, name: str) -> dict[str, Any]:
    """One dataset: manifest digests, sealed files (checked), keys, findings as counts and types.

    Raises:
        UsageError: no such dataset.
    """
    from sealtune.data import show_dataset

    info = show_dataset(ws, name)
    m = info.manifest
    files = []
    for role in ("data", "quarantine", "keys"):
        f = m.get("files", {}).get(role, {})
        files.append({"role": role, "name": f.get("name"), "records": f.get("records"),
                      "content_sha256": f.get("content_sha256") or f.get("sha256"),
                      "intact": bool(info.intact.get(str(f.get("name"))))})
    keks, current = info.keks()
    policy = m.get("policy", {})
    return {
        "name": info.name, "created": info.created, "counts": _counts(info.counts),
        "input": {"format": m.get("input", {}).get("format"),
                  "sha256": m.get("input", {}).get("sha256")},
        "policy": {k: policy.get(k) for k in ("digest", "redaction_digest", "screening_digest")},
        "keks": list(keks), "keks_read_now": current, "files": files,
        "pipeline": _pick(m.get("pipeline") or {}, ("pipeline", "step", "step_key")),
        "findings": _findings(info),
    }


def _findings(info: Any) -> dict[str, Any]:
    try:
        raw = json.loads(info.file("findings").read_text("utf-8"))
    except (OSError, ValueError, KeyError, UsageError):
        return {}
    pii, screening = raw.get("pii") or {}, raw.get("screening") or {}
    return {
        "pii": {"entities": _counts(pii.get("entities")), "actions": _counts(pii.get("actions")),
                "by_type": _counts(pii.get("by_type")),
                "records_with_pii": pii.get("records_with_pii"),
                "records_dropped": pii.get("records_dropped")},
        "screening": {"counts": _counts(screening.get("counts")),
                      "records_by_action": _counts(screening.get("records_by_action")),
                      "findings": [_pick(f, _SCREEN_FINDING)
                                   for f in screening.get("findings") or []
                                   if isinstance(f, Mapping)],
                      "triggers": [_pick(t, _TRIGGER) for t in screening.get("triggers") or []
                                   if isinstance(t, Mapping)]},
    }


# -- jobs ----------------------------------------------------------------------------


def job_list(ws: Workspace) -> list[dict[str, Any]]:
    """Training jobs: status, model, dataset, steps, ε spent."""
    from sealtune.train.jobs import list_jobs

    return [_job_summary(j) for j in list_jobs(ws)]


def _job_summary(job: Mapping[str, Any]) -> dict[str, Any]:
    privacy, metrics = job.get("privacy") or {}, job.get("metrics") or {}
    return {**_pick(job, _JOB_FIELDS), "steps": metrics.get("steps"),
            "epsilon": privacy.get("epsilon_spent"), "delta": privacy.get("delta"),
            "eval_loss": metrics.get("eval_loss"), "final_loss": metrics.get("final_loss")}


def job_detail(ws: Workspace, ref: str) -> dict[str, Any]:
    """One job: its sandbox timeline, metrics, privacy report, per-epoch losses.

    Raises:
        UsageError: no such job.
    """
    from sealtune.train.jobs.records import resolve_job, show_job

    job = show_job(ws, resolve_job(ws, ref))
    timeline = []
    for ev in job.get("timeline") or []:
        item = {**_pick(ev, ("at", "event", "outcome", "stage")), **_numbers(ev)}
        if isinstance(ev.get("measurement"), Mapping):
            item["measurement"] = ev["measurement"].get("digest")
        timeline.append(item)
    return {**_job_summary(job), "metrics": _numbers(job.get("metrics")),
            "privacy": _numbers(job.get("privacy")),
            "epochs": [_numbers(e) for e in job.get("epochs") or [] if isinstance(e, Mapping)],
            "config": _counts(job.get("config")), "timeline": timeline,
            "measurement": (job.get("measurement") or {}).get("digest")}


# -- models and keys -----------------------------------------------------------------


def _model_records(ws: Workspace) -> list[dict[str, Any]]:
    from sealtune.serve.model import MANIFEST

    root = ws.area("models")
    out = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        manifest = path / MANIFEST
        if path.is_dir() and manifest.is_file():
            try:
                out.append(json.loads(manifest.read_text("utf-8")))
            except ValueError:
                out.append({"name": path.name, "status": "unreadable"})
    return out


def _model_view(rec: Mapping[str, Any]) -> dict[str, Any]:
    dataset, base = rec.get("dataset") or {}, rec.get("base") or {}
    return {**_pick(rec, ("name", "job", "created", "sandboxed", "status", "format")),
            "dataset": dataset.get("name") if isinstance(dataset, Mapping) else None,
            "dataset_digest": dataset.get("digest") if isinstance(dataset, Mapping) else None,
            "base_digest": base.get("digest") if isinstance(base, Mapping) else None,
            "privacy": _numbers(rec.get("privacy") if isinstance(rec.get("privacy"), Mapping)
                                else None)}


def model_list(ws: Workspace) -> list[dict[str, Any]]:
    """The workspace's fine-tuned models (their ``model.json`` records, cut down)."""
    return [_model_view(r) for r in _model_records(ws)]


def model_detail(ws: Workspace, name: str) -> dict[str, Any]:
    """One model by name.

    Raises:
        UsageError: no such model.
    """
    for rec in _model_records(ws):
        if rec.get("name") == name:
            return _model_view(rec)
    raise UsageError(f"no model {name!r}", hint="list them at GET /api/v1/models")


def key_list(ws: Workspace) -> list[dict[str, Any]]:
    """Key metadata (name, backend, algorithm, versions, state): never key material."""
    return [{"name": k.name, "backend": k.backend, "algorithm": k.algorithm,
             "current": k.current, "versions": list(k.versions), "state": k.state,
             "created": k.created} for k in ws.keys.list()]


# -- release-gate reports -----------------------------------------------------------


def gate_list(ws: Workspace) -> list[dict[str, Any]]:
    """The workspace's gate runs, newest first: id, verdict, model digest, created."""
    from sealtune.assess import list_assessments

    return [{"id": a.id, "verdict": a.verdict, "model_digest": a.model_digest,
             "created": a.index.get("created"),
             "model": (a.index.get("model") or {}).get("name")} for a in list_assessments(ws)]


def gate_report(ws: Workspace, assessment_id: str) -> dict[str, Any]:
    """One gate report, opened, checked against its index and validated (no text by schema).

    Raises:
        UsageError: no such report. IntegrityError: it does not check out.
    """
    from sealtune.assess import load_report, read_assessment
    from sealtune.errors import ConfigError

    try:
        found = read_assessment(ws, assessment_id)
    except ConfigError as exc:
        raise UsageError(exc.message, hint="list them at GET /api/v1/gates") from None
    return load_report(found.report(ws))


# -- the audit log and run timelines -------------------------------------------------


def entry_view(e: Entry) -> dict[str, Any]:
    """One ledger entry as JSON (what ``sealtune audit log --json`` prints)."""
    return dict(e.to_json())


def run_list(ws: Workspace) -> list[dict[str, Any]]:
    """Pipeline runs seen in the audit log: pipeline, run id, first and last time."""
    runs: dict[str, dict[str, Any]] = {}
    for e in ws.ledger.entries(action="pipeline.step_started"):
        run = str(e.details.get("run", ""))
        pipeline = e.resource.split("/")[1] if e.resource.count("/") >= 2 else e.resource
        runs.setdefault(run, {"run": run, "pipeline": pipeline, "started": e.time})
    return list(runs.values())


def run_timeline(ws: Workspace, pipeline: str, *, run: str | None = None) -> dict[str, Any]:
    """The security timeline of a pipeline's run (the newest unless ``run`` is given).

    Events from the run's first step to its last: sandboxes created, data
    decrypted, outputs sealed, sandboxes destroyed (each marked with its
    stage, ``data`` or ``train``), keys used, training, gate and registry
    events; per-record quarantine events are counted, not listed.

    Raises:
        UsageError: the pipeline has no run in the audit log.
    """
    runs = [r for r in run_list(ws) if r["pipeline"] == pipeline and (run in (None, r["run"]))]
    if not runs:
        raise UsageError(f"no run of pipeline {pipeline!r} in the audit log",
                         hint="run it with 'sealtune run PIPELINE.yaml'")
    chosen = runs[-1]["run"]
    events: list[dict[str, Any]] = []
    quarantined, inside, last_step = 0, False, -1
    for e in ws.ledger.entries(since=_parse_time(runs[-1]["started"])):
        step = e.action.startswith("pipeline.step_")
        if step and e.details.get("run") == chosen:
            inside = e.action == "pipeline.step_started" or inside
            last_step = len(events)
        if not inside:
            continue
        if e.action == "data.quarantine":
            quarantined += 1
        elif e.action.startswith(TIMELINE_ACTIONS):
            events.append(_timeline_event(e))
    events = events[:last_step + 1]
    return {"pipeline": pipeline, "run": chosen, "events": events,
            "quarantined_records": quarantined}


def _parse_time(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _timeline_event(e: Entry) -> dict[str, Any]:
    d = e.details
    stage = d.get("stage") or (e.resource.split("/")[-1] if e.action.startswith("pipeline.")
                               else None)
    kind = e.action.split(".", 1)[0]
    return {"seq": e.seq, "time": e.time, "action": e.action, "resource": _resource(e),
            "outcome": e.outcome, "actor": e.actor, "stage": stage, "kind": kind,
            "figures": _numbers(d)}


def _resource(e: Entry) -> str:
    """The entry's resource as shown: never a host path (an unpinned base by its digest).

    Ledgers written before ``base.unpinned`` named the base by digest hold its
    directory; any other absolute path is shown by its last component.
    """
    if e.action == "base.unpinned":
        return f"unpinned base {e.details.get('digest', '(digest not recorded)')}"
    if e.resource.startswith("/"):
        return "…/" + e.resource.rstrip("/").rsplit("/", 1)[-1]
    return e.resource
