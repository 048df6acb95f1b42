"""The OpenAI-compatible files and jobs, kept in the workspace catalogue.

:class:`FineTuning` holds the uploaded files and the fine-tuning jobs of the
console, and writes each through to the workspace's
:class:`~sealtune.storage.MetaStore` (collections ``openai_files`` and
``openai_jobs``, one JSON record per id, compare-and-set), so that a
restarted console lists and serves the same ids. A job that was queued or
running when its console stopped is loaded as ``failed`` (``interrupted``):
its worker thread died with the process, and the sealtune job behind it shows
as ``killed`` in ``sealtune jobs list``.

What this protects against: OpenAI job and file ids lost on a restart, a
lost update between two writers of one record (compare-and-set). What it does
not: keep anything secret: records hold ids, names, sizes, event names and
numbers only (never data, prompts or keys); the uploaded file's name as the
client sent it is kept as given.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sealtune.storage import MetaStore

__all__ = ["FILES", "JOBS", "FineTuning", "FtJob"]

FILES = "openai_files"
JOBS = "openai_jobs"
RUNNING = ("queued", "running")
#: The error of a job its console stopped before it ended.
INTERRUPTED = {"code": "interrupted", "param": None,
               "message": "the console stopped while the job ran; start a new job"}


@dataclass
class FtJob:
    """One OpenAI-style job and the sealtune job behind it."""

    id: str
    model: str
    training_file: str
    dataset: str
    created_at: int
    hyperparameters: dict[str, Any]
    extension: dict[str, Any]
    status: str = "queued"
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    error: dict[str, Any] | None = None
    sealtune_job: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Set to ask the job's thread to cancel it (see :func:`sealtune.train.run_job`).
    cancel: threading.Event = field(default_factory=threading.Event, repr=False,
                                    compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"object": "fine_tuning.job", "id": self.id, "model": self.model,
                "created_at": self.created_at, "finished_at": self.finished_at,
                "fine_tuned_model": self.fine_tuned_model, "organization_id": "sealtune",
                "result_files": [], "status": self.status, "validation_file": None,
                "training_file": self.training_file, "hyperparameters": self.hyperparameters,
                "trained_tokens": None, "error": self.error, "seed": 0,
                "integrations": [], "estimated_finish": None,
                "sealtune": {**self.extension, "job": self.sealtune_job,
                             "dataset": self.dataset}}

    def to_record(self) -> bytes:
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cancel"}
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_record(cls, value: bytes) -> FtJob:
        doc = json.loads(value)
        doc.pop("cancel", None)
        return cls(**doc)


class FineTuning:
    """Uploaded files and jobs, written through to the workspace catalogue.

    Args:
        meta: the workspace's catalogue store (thread-safe; writes hold :attr:`lock`).
    """

    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self.lock = threading.RLock()
        self.versions: dict[tuple[str, str], int] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, FtJob] = {}
        for rec in meta.list(FILES):
            self.files[rec.key] = json.loads(rec.value)
            self.versions[(FILES, rec.key)] = rec.version
        for rec in meta.list(JOBS):
            job = FtJob.from_record(rec.value)
            self.versions[(JOBS, rec.key)] = rec.version
            self.jobs[job.id] = job
            if job.status in RUNNING:  # its thread died with the console that ran it
                job.status, job.error = "failed", dict(INTERRUPTED)
                job.finished_at = job.finished_at or int(time.time())
                self.save_job(job)

    def _put(self, collection: str, key: str, value: bytes) -> None:
        with self.lock:
            expect = self.versions.get((collection, key), 0)
            self.versions[(collection, key)] = self.meta.put(collection, key, value,
                                                             expect=expect).version

    def add_file(self, record: dict[str, Any]) -> None:
        """Keep an uploaded file's record (ids, sizes, names and counts only)."""
        with self.lock:
            self.files[record["id"]] = record
            self._put(FILES, record["id"], json.dumps(record, sort_keys=True).encode())

    def add_job(self, job: FtJob) -> None:
        with self.lock:
            self.jobs[job.id] = job
            self.save_job(job)

    def save_job(self, job: FtJob) -> None:
        """Write the job's record as it is now."""
        with self.lock:
            self._put(JOBS, job.id, job.to_record())

    def event(self, job: FtJob, message: str, *, level: str = "info",
              data: dict[str, Any] | None = None, kind: str = "message") -> None:
        """Append an event (a fixed message or an event name, and numbers only).

        Saved at once, except metrics (saved with the next message or status change).
        """
        with self.lock:
            job.events.append({"object": "fine_tuning.job.event",
                               "id": f"ftevent-{secrets.token_hex(8)}",
                               "created_at": int(time.time()), "level": level,
                               "message": message, "type": kind, "data": data or {}})
            if kind != "metrics":
                self.save_job(job)
