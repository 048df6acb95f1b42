"""The OpenAI files and jobs in the workspace catalogue: written through, loaded again,
a job that was running when its console stopped loaded as failed (interrupted)."""

from __future__ import annotations

import pytest

from sealtune.api.ft_state import JOBS, FineTuning, FtJob
from sealtune.errors import ConflictError
from sealtune.workspace import Workspace


def _job(job_id: str, status: str) -> FtJob:
    return FtJob(job_id, "tiny", "file-1", "ft-1", 1, {"n_epochs": 1}, {"max_steps": 2},
                 status=status)


def test_a_restart_keeps_files_and_jobs_and_interrupts_the_running(
        workspace: Workspace) -> None:
    ft = FineTuning(workspace.meta)
    ft.add_file({"id": "file-1", "bytes": 10, "filename": "a.jsonl"})
    done, running = _job("ftjob-done", "succeeded"), _job("ftjob-run", "running")
    for job in (done, running):
        ft.add_job(job)
        ft.event(job, "Job created")
    ft.event(running, "step", kind="metrics", data={"step": 3})  # kept with the next save
    done.fine_tuned_model = "support-x"
    ft.save_job(done)
    again = FineTuning(workspace.meta)
    assert again.files == ft.files
    assert again.jobs["ftjob-done"].to_json() == done.to_json()
    assert [e["message"] for e in again.jobs["ftjob-done"].events] == ["Job created"]
    interrupted = again.jobs["ftjob-run"]
    assert interrupted.status == "failed" and interrupted.error is not None
    assert interrupted.error["code"] == "interrupted" and interrupted.finished_at
    assert not interrupted.cancel.is_set()
    # written back: a third load sees it failed too, and the first handle's stale
    # version of that record cannot overwrite it
    assert FineTuning(workspace.meta).jobs["ftjob-run"].status == "failed"
    with pytest.raises(ConflictError):
        ft.save_job(running)
    assert workspace.meta.get(JOBS, "ftjob-run") is not None
