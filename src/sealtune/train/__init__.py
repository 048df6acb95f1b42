"""Sandboxed training.

Training code runs in a bubblewrap sandbox (:mod:`sealtune.sandbox`): OS isolation (Linux
namespaces, read-only mounts, no network, a private tmpfs, resource limits),
not a TEE — root on the host can still read its memory. Keys reach the sandbox
over an inherited pipe only; progress and milestones come back over a
structured event channel that carries numbers and short tokens, never sample
text.

The public surface (loaded lazily: ``import sealtune.train`` loads neither
torch nor transformers): :func:`run_job` (train a LoRA adapter on a sealed
dataset, in the sandbox, recorded as a job) with its :class:`TrainConfig`,
:class:`JobResult` and :class:`TrainingError`; the job records
:func:`list_jobs`, :func:`show_job`, :func:`resolve_job`, :func:`request_cancel`
(cancel a running job); the sandbox's
:class:`SandboxEvent` and :class:`SandboxUnavailableError`; and
:func:`make_tiny` (a tiny local model for demos and tests). Each name is
loaded from the module that defines it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.sandbox.process import SandboxEvent
    from sealtune.sandbox.spec import SandboxUnavailableError
    from sealtune.train.config import LoraSettings, TrainConfig
    from sealtune.train.jobs.cancel import request_cancel
    from sealtune.train.jobs.records import list_jobs, resolve_job, show_job
    from sealtune.train.jobs.run import UNSAFE_WARNING, JobResult, TrainingError
    from sealtune.train.jobs.start import run_job
    from sealtune.train.tiny import make_tiny

__all__ = [
    "UNSAFE_WARNING",
    "JobResult",
    "LoraSettings",
    "SandboxEvent",
    "SandboxUnavailableError",
    "TrainConfig",
    "TrainingError",
    "list_jobs",
    "make_tiny",
    "request_cancel",
    "resolve_job",
    "run_job",
    "show_job",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("LoraSettings", "TrainConfig"), "sealtune.train.config"),
    **dict.fromkeys(("list_jobs", "resolve_job", "show_job"), "sealtune.train.jobs.records"),
    **dict.fromkeys(("UNSAFE_WARNING", "JobResult", "TrainingError"), "sealtune.train.jobs.run"),
    "run_job": "sealtune.train.jobs.start",
    "request_cancel": "sealtune.train.jobs.cancel",
    "SandboxEvent": "sealtune.sandbox.process",
    "SandboxUnavailableError": "sealtune.sandbox.spec",
    "make_tiny": "sealtune.train.tiny",
})
