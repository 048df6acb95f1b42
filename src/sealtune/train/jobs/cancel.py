"""Cancelling a running training job: the request, the check the runner polls, the clean-up.

A cancel is asked for in one of two ways: in the runner's own process (a
callable such as ``threading.Event.is_set``, passed to
:func:`~sealtune.train.jobs.run_job` as ``cancel``: the console's job threads),
or from any process by :func:`request_cancel` (``sealtune jobs cancel JOB``),
which writes the marker ``<workspace>/jobs/<job-id>.cancel`` and records
``train.cancel_requested``. The runner polls both (:func:`cancel_check`)
while the sandbox runs; on a request the sandbox is destroyed (every process
of its namespace killed, its tmpfs gone with it), the job's output directory
(sealed checkpoints) removed, the record set ``cancelled`` and
``train.cancelled`` recorded. Nothing is installed: a model is only moved
into ``models/`` after a sandbox that finished on its own.

What this protects against: a cancelled job leaving half-written or
resumable outputs (its sealed checkpoints are removed, so a later job does
not resume it), a cancel that goes unrecorded. What it does not: a job run
with ``--no-sandbox`` trains in its runner's process and is cancelled only
before its worker starts; a cancel that arrives after the sandbox finished
does not stop the installation of its model.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import UsageError
from sealtune.outputs import write_atomic
from sealtune.train.jobs.records import JOBS, resolve_job, show_job

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["cancel_check", "clear_request", "discard_outputs", "request_cancel"]

SUFFIX = ".cancel"


def _marker(ws: Workspace, job_id: str) -> Path:
    return ws.area(JOBS) / f"{job_id}{SUFFIX}"


def request_cancel(ws: Workspace, ref: str) -> dict[str, Any]:
    """Ask the runner of the running job ``ref`` (an id, a prefix or ``latest``) to cancel it.

    Returns the job record as it is now (the runner cancels within a second).

    Raises:
        UsageError: no such job, or it is not running (finished, failed, killed or
            already cancelled).
    """
    job_id = resolve_job(ws, ref)
    rec = show_job(ws, job_id)
    if rec["status"] != "running":
        raise UsageError(f"job {job_id} is {rec['status']}, not running: nothing to cancel",
                         hint="list the running jobs with 'sealtune jobs list'")
    write_atomic(_marker(ws, job_id), b"cancel\n")
    ws.audit("train.cancel_requested", f"job/{job_id}", details={})
    return rec


def cancel_check(ws: Workspace, job_id: str,
                 cancel: Callable[[], bool] | None) -> Callable[[], bool]:
    """What the runner polls: ``cancel()`` (in process) or the job's cancel marker."""
    marker = _marker(ws, job_id)

    def check() -> bool:
        return bool(cancel is not None and cancel()) or marker.exists()

    return check


def discard_outputs(ws: Workspace, job_id: str, run_dir: Path) -> None:
    """Remove a cancelled job's output directory (sealed checkpoints) and its marker."""
    shutil.rmtree(run_dir, ignore_errors=True)
    clear_request(ws, job_id)


def clear_request(ws: Workspace, job_id: str) -> None:
    """Remove the job's cancel marker (a request that came after its sandbox finished)."""
    _marker(ws, job_id).unlink(missing_ok=True)
