"""The job catalogue: job records on disk, their effective status, and what to resume.

Each training job has a record in ``<workspace>/jobs/<job-id>.json`` (status,
timeline, metrics: numbers and digests, never data), rewritten atomically
(write to a temp file, fsync, rename) on every event, and every event is
also written to the audit ledger. A record says ``running`` only while the
runner process it names (pid and start time, so a reused pid does not count)
is alive; otherwise it is shown as ``killed``. :func:`resume_from` picks the
killed or failed job whose sealed checkpoints a new run of the same model,
dataset and config continues from.

What this protects against: a torn record after a crash, a dead runner shown
as still running, a job id that escapes ``jobs/`` (ids and model names must
match a strict pattern), resuming from another dataset's job. What
it does not: the records are unsigned plain JSON, so anyone who can write the
workspace can edit them (the ledger and the registry's signatures are what
can be checked); they hold no data or keys, only wrapped-key references,
figures and digests.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import UsageError
from sealtune.outputs import open_text_output

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

JOBS, MODELS = "jobs", "models"
JOB_FORMAT, MODEL_FORMAT = "sealtune.job/v1", "sealtune.model/v1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def now() -> str:
    """The current UTC time, ISO 8601 to the millisecond (what records and timelines carry)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (``/proc/<pid>/stat``), or None if it is gone.

    With the pid, it names a runner process uniquely: a reused pid has another start.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        return None


def _status(rec: dict[str, Any]) -> str:
    """``running`` only while the recorded runner process still exists; else ``killed``."""
    runner = rec.get("runner") or {}
    if rec.get("status") == "running" and process_start(int(runner.get("pid", 0))) != runner.get(
            "start"):
        return "killed"
    return str(rec.get("status"))


def write_json(path: Path, data: object) -> None:
    """Replace ``path`` with ``data`` as JSON: temp file, fsync, rename (a regular file only)."""
    with open_text_output(path, atomic="require") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def list_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """Every job record, oldest first, with its effective status (killed runners shown so)."""
    root = ws.area(JOBS)
    out = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            rec = json.loads(path.read_text("utf-8"))
            if isinstance(rec, dict) and rec.get("format") == JOB_FORMAT:
                out.append({**rec, "status": _status(rec)})
    return sorted(out, key=lambda r: str(r.get("created")))


def show_job(ws: Workspace, job_id: str) -> dict[str, Any]:
    """One job record (with its effective status).

    Raises:
        UsageError: no job with that id.
    """
    if not NAME_RE.match(job_id) or not (ws.area(JOBS) / f"{job_id}.json").is_file():
        raise UsageError(f"no job {job_id!r}", hint="list them with 'sealtune jobs list'")
    rec = json.loads((ws.area(JOBS) / f"{job_id}.json").read_text("utf-8"))
    return {**rec, "status": _status(rec)}


def resolve_job(ws: Workspace, ref: str) -> str:
    """The id of the job ``ref`` names: ``latest`` (the newest), an id, or a unique prefix.

    Raises:
        UsageError: no job matches, or a prefix matches several (their ids listed).
    """
    jobs = list_jobs(ws)
    if ref == "latest":
        if not jobs:
            raise UsageError("there are no jobs yet", hint="start one with 'sealtune train'")
        return str(jobs[-1]["id"])
    ids = [str(j["id"]) for j in jobs]
    if ref in ids:
        return ref
    matches = [i for i in ids if ref and i.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
        raise UsageError(f"{ref!r} is the start of {len(matches)} job ids: {shown}",
                         hint="give more of the id")
    raise UsageError(f"no job {ref!r}", hint="list them with 'sealtune jobs list'")


class JobRecord:
    """A job record that appends to its timeline, rewrites itself and audits each event.

    Its :meth:`event` is the ``record`` callback of the sandbox's
    :class:`~sealtune.sandbox.timeline.Timeline`.
    """

    def __init__(self, ws: Workspace, rec: dict[str, Any]) -> None:
        self.ws, self.rec = ws, rec
        self.path = ws.area(JOBS) / f"{rec['id']}.json"

    def save(self) -> None:
        """Rewrite the record atomically (its ``updated`` time set)."""
        self.rec["updated"] = now()
        write_json(self.path, self.rec)

    def event(self, action: str, details: Mapping[str, Any], *, at: float | None = None,
              outcome: str = "success") -> None:
        """Append ``action`` to the timeline, save, and write it to the audit ledger."""
        when = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
        self.rec["timeline"].append({"at": when.isoformat(timespec="milliseconds"),
                                     "event": action, "outcome": outcome, **details})
        self.save()
        self.ws.audit(action, f"job/{self.rec['id']}", outcome=outcome,  # type: ignore[arg-type]
                      details=dict(details))


def checkpoint_dir(ws: Workspace, rec: dict[str, Any]) -> Path | None:
    """The job's directory of sealed checkpoints, if it holds one."""
    path = ws.area(JOBS) / str(rec["id"]) / "checkpoints"
    return path if path.is_dir() and any(path.glob("ckpt-*.sealed")) else None


def resume_from(ws: Workspace, *, out_name: str, dataset: str, fingerprint: str,
                 resume: str | None) -> dict[str, Any] | None:
    """The job to resume: ``resume`` if given, else the newest killed one of ``out_name``."""
    if resume is not None:
        rec = show_job(ws, resume)
        if rec["status"] not in ("killed", "failed") or checkpoint_dir(ws, rec) is None:
            raise UsageError(f"job {resume} cannot be resumed: it is {rec['status']} and "
                             "must be killed or failed with a sealed checkpoint")
        if rec["dataset"] != dataset:
            raise UsageError(f"job {resume} trained on dataset {rec['dataset']!r}, not "
                             f"{dataset!r}")
        return rec
    found = [r for r in list_jobs(ws) if r.get("out_name") == out_name
             and r["status"] in ("killed", "failed") and not r.get("resumed_by")
             and r.get("dataset") == dataset and r.get("fingerprint") == fingerprint
             and checkpoint_dir(ws, r) is not None]
    return found[-1] if found else None
