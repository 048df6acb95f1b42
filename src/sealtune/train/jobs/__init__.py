"""Training jobs: start one, run it in the sandbox, keep its record.

The public surface (loaded lazily: importing this package, or
:mod:`sealtune.train.jobs.records` alone for ``jobs list``, loads neither
the sandbox machinery nor torch):

* :func:`run_job` (:mod:`.start`): check the request, make the run
  directory, the sandbox spec and the record, and run the job;
* :class:`JobResult`, :class:`TrainingError`, :data:`UNSAFE_WARNING`,
  :data:`ProgressFn` (:mod:`.run`: one job's execution, from keys in to the
  installed model, its timeline in the ledger);
* :func:`list_jobs`, :func:`show_job`, :func:`resolve_job` (:mod:`.records`:
  the job catalogue);
* :func:`request_cancel` (:mod:`.cancel`: cancel a running job from any
  process; ``run_job(cancel=...)`` in the runner's own).

The job's data keys and sealing targets are :mod:`.keys`. What each part
protects against and what it does not is stated in its module
(:mod:`.start` for the whole).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.train.jobs.cancel import request_cancel
    from sealtune.train.jobs.records import list_jobs, resolve_job, show_job
    from sealtune.train.jobs.run import UNSAFE_WARNING, JobResult, ProgressFn, TrainingError
    from sealtune.train.jobs.start import run_job

__all__ = [
    "UNSAFE_WARNING",
    "JobResult",
    "ProgressFn",
    "TrainingError",
    "list_jobs",
    "request_cancel",
    "resolve_job",
    "run_job",
    "show_job",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("list_jobs", "resolve_job", "show_job"), "sealtune.train.jobs.records"),
    **dict.fromkeys(("UNSAFE_WARNING", "JobResult", "ProgressFn", "TrainingError"),
                    "sealtune.train.jobs.run"),
    "run_job": "sealtune.train.jobs.start",
    "request_cancel": "sealtune.train.jobs.cancel",
})
