"""A pipeline's run state in the workspace, and the lock that serialises runs.

The state of pipeline ``NAME`` is ``<workspace>/pipelines/NAME/state.json``:
per step, the record of its last completed run (:class:`StepRecord`: its
key, its inputs and outputs by digest, its settings as run, the sandbox
measurement, the ledger sequence numbers of its events, a summary of
figures). It is rewritten atomically (temp file, fsync, rename) after each
step completes, so a run killed at any moment leaves the state of the steps
that completed before it, never a torn file. One run at a time holds
``<workspace>/pipelines/.lock`` (an ``flock``; the kernel releases it when
the process dies, even by SIGKILL).

What this protects against: a torn state after a crash, and two runs
interleaving their steps in one workspace. What it does not: the state is
plain JSON, unsigned (numbers, names and digests only, never data or keys):
whoever can write the workspace can rewrite it, which can make the runner
skip a step whose outputs still match what the edited state says; the audit
ledger's events and the evidence bundle are what can be checked.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError, UsageError
from sealtune.outputs import write_atomic

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["PIPELINES", "STATE_FORMAT", "RunState", "StepRecord", "pipeline_dir", "run_lock"]

PIPELINES = "pipelines"
STATE_FORMAT = "sealtune.pipeline-state/v1"
_LOCK = ".lock"


@dataclass(frozen=True)
class StepRecord:
    """What one step's completed run produced (numbers, names and digests only).

    Attributes:
        name: the step (``data``, ``train``).
        key: the step key (:func:`sealtune.pipeline.cache.step_key`).
        inputs: input name -> digest (the raw input, the policy, the dataset, the base).
        outputs: workspace-relative artifact path -> digest, checked before any reuse.
        digests: the step's results by digest, independent of random data keys (the
            dataset's record stream, the trained weights): equal across reruns.
        config: the step's settings as run.
        measurement: the sandbox measurement (train), else None.
        ledger_seqs: sequence numbers of the audit ledger entries written during the step.
        summary: figures to show (counts, ε, names).
        started: ISO 8601 UTC.
        seconds: how long it ran.
    """

    name: str
    key: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    digests: dict[str, str]
    config: dict[str, Any]
    measurement: dict[str, Any] | None
    ledger_seqs: list[int]
    summary: dict[str, Any]
    started: str
    seconds: float

    def evidence(self) -> dict[str, Any]:
        """Keyword arguments for an evidence recorder's ``step(...)`` call."""
        return {"name": self.name, "kind": self.name, "inputs": dict(self.inputs),
                "outputs": {**self.outputs, **self.digests}, "config": dict(self.config),
                "measurement": self.measurement, "ledger_seqs": list(self.ledger_seqs)}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> StepRecord:
        try:
            return cls(**data)
        except TypeError:
            raise IntegrityError(f"{where}: a step record is malformed",
                                 hint="remove the state file to rerun every step") from None


@dataclass
class RunState:
    """The steps a pipeline completed, and where that is kept."""

    path: Path
    pipeline: str
    steps: dict[str, StepRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, ws: Workspace, pipeline: str) -> RunState:
        """The state of ``pipeline`` (empty if it never ran).

        Raises:
            IntegrityError: the state file is unreadable or malformed.
        """
        path = pipeline_dir(ws, pipeline) / "state.json"
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return cls(path, pipeline)
        except (OSError, ValueError):
            raise IntegrityError(f"{path}: unreadable or not JSON",
                                 hint="remove it to rerun every step") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or \
                data.get("pipeline") != pipeline or not isinstance(data.get("steps"), dict):
            raise IntegrityError(f"{path}: not a {STATE_FORMAT} file for {pipeline!r}",
                                 hint="remove it to rerun every step")
        steps = {k: StepRecord.from_json(v, str(path)) for k, v in data["steps"].items()}
        return cls(path, pipeline, steps)

    def save(self) -> None:
        """Write the state atomically."""
        doc = {"format": STATE_FORMAT, "pipeline": self.pipeline,
               "steps": {k: v.to_json() for k, v in self.steps.items()}}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode())

    def record(self, step: StepRecord, *, downstream: Iterable[str] = ()) -> None:
        """Keep ``step``, forget the steps after it (their inputs changed), and save."""
        self.steps[step.name] = step
        for name in downstream:
            self.steps.pop(name, None)
        self.save()


def pipeline_dir(ws: Workspace, pipeline: str) -> Path:
    """``<workspace>/pipelines/<pipeline>`` (the name was validated by the schema)."""
    return ws.area(PIPELINES) / pipeline


@contextmanager
def run_lock(ws: Workspace) -> Iterator[None]:
    """Hold the workspace's pipeline lock; a second run fails at once (exit 2)."""
    root = ws.area(PIPELINES)
    root.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError("another 'sealtune run' is running in this workspace",
                             hint="wait for it to finish (a killed one releases the lock)"
                             ) from None
        yield
    finally:
        os.close(fd)
