"""Running a pipeline: its steps in order, each skipped when nothing it depends on changed.

:func:`run_pipeline` checks the keys the file names, takes the workspace's
pipeline lock, then for each step computes its inputs' digests from disk and
its key (:mod:`.cache`). A step whose key equals the one in the run state
(:mod:`.state`) is skipped ("cached") once every output it recorded is
checked against its digest; a step whose key changed runs, and so does every
step after a forced one. After each step the run state is saved atomically,
and the ledger gets ``pipeline.step_started`` / ``pipeline.step_finished``
(or ``pipeline.step_failed``, ``pipeline.step_cached``) with the step key
and digests, so each step's record carries the sequence numbers of the
audit entries written while it ran (an evidence bundle cites them).

What this protects against: a stale result reused after its inputs, settings
or code changed (the key changes), an output edited on disk after it was
recorded (exit 3 naming the step and the file, never a silent redo), a run
killed at any point (the state keeps the completed steps; a stage's own
output is published atomically and adopted on the rerun if its step key
matches; a killed training job resumes from its sealed checkpoint, bit for
bit), two runs interleaving (the lock). What it does not: see
:mod:`.state` (plain JSON state) and :mod:`.cache` (what the key omits).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError, KeyringError, SealtuneError, UsageError
from sealtune.pipeline.cache import step_key
from sealtune.pipeline.secret import pipeline_secret
from sealtune.pipeline.state import RunState, StepRecord, run_lock
from sealtune.pipeline.steps import (
    AssessAdapter,
    DataAdapter,
    Outcome,
    TrainAdapter,
    artifact_digest,
)

if TYPE_CHECKING:
    from sealtune.pipeline.schema import Pipeline
    from sealtune.workspace import Workspace

__all__ = ["EventFn", "RunResult", "StepRun", "ensure_secret", "run_pipeline"]

#: ``on_event(event)``: one JSON-able dict per step event (see docs/pipeline.md).
EventFn = Callable[[dict[str, Any]], None]
#: ``on_progress(step, fields)``: numbers only.
StepProgressFn = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class StepRun:
    """One step in one run: its record, whether it was cached, this run's ledger entries."""

    record: StepRecord
    cached: bool
    ledger_seqs: tuple[int, ...]


@dataclass(frozen=True)
class RunResult:
    """A completed run."""

    pipeline: str
    run_id: str
    steps: tuple[StepRun, ...]
    seconds: float

    @property
    def digests(self) -> dict[str, dict[str, str]]:
        """Step -> its results by digest (independent of random data keys)."""
        return {s.record.name: dict(s.record.digests) for s in self.steps}

    def step(self, name: str) -> StepRun:
        """The run of step ``name``."""
        return next(s for s in self.steps if s.record.name == name)


def _adapters(pipeline: Pipeline, ws: Workspace) -> dict[str, Any]:
    adapters: dict[str, Any] = {"data": DataAdapter(pipeline.data, pipeline=pipeline.name,
                                                    default_key=ws.config.default_key)}
    if pipeline.train is not None:
        adapters["train"] = TrainAdapter(pipeline.train)
    if pipeline.assess is not None:
        adapters["assess"] = AssessAdapter(pipeline.assess)
    return adapters


def ensure_secret(pipeline: Pipeline, ws: Workspace) -> None:
    """Create the pipeline's sealed secret now if it does not exist (a run does it too)."""
    pipeline_secret(ws, pipeline.name, DataAdapter(pipeline.data, pipeline=pipeline.name,
                                                   default_key=ws.config.default_key).keys)


def _check_keys(pipeline: Pipeline, ws: Workspace) -> None:
    """Every key the file names must be an active key of the workspace (before any step)."""
    named = [("steps.data.keys", pipeline.data.keys)]
    if pipeline.train is not None:
        named.append(("steps.train.keys", pipeline.train.keys))
    for path, names in named:
        for i, name in enumerate(names or ()):
            try:
                state: str = ws.keys.info(name).state
            except KeyringError:
                state = "missing"
            if state != "active":
                raise pipeline.error(
                    f"{path}[{i}]", f"no active key named {name!r} in {ws.root} ({state})",
                    hint=f"create it ('sealtune keys create {name}') or name a key from "
                         "'sealtune keys list'")


def _check_force(pipeline: Pipeline, force: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(force)
    unknown = sorted(chosen - set(pipeline.steps))
    if unknown:
        raise UsageError(f"--force-step {', '.join(unknown)}: not a step of this pipeline",
                         hint="steps: " + ", ".join(pipeline.steps))
    return chosen


def run_pipeline(pipeline: Pipeline, ws: Workspace, *, force: Iterable[str] = (),
                 on_event: EventFn | None = None,
                 on_progress: StepProgressFn | None = None) -> RunResult:
    """Run ``pipeline`` in ``ws``: every step whose key or outputs changed, in order.

    Args:
        pipeline: from :func:`sealtune.pipeline.load_pipeline`.
        ws: the workspace (keys, ledger, where outputs and the run state go).
        force: steps to rerun even if cached (and every step after them).
        on_event: called with each step event (JSON-able dicts).
        on_progress: called with each long step's progress (numbers only).

    Raises:
        ConfigError: a key the file names is missing (with its line and column).
        IntegrityError: a recorded output or a step's input changed on disk (exit 3).
        UsageError: another run holds the workspace, or ``force`` names no step.
        SealtuneError: a stage failed (its own error, e.g. ``TrainingError``).
    """
    forced = _check_force(pipeline, force)
    _check_keys(pipeline, ws)
    with run_lock(ws):
        runner = _Runner(pipeline, ws, RunState.load(ws, pipeline.name), on_event, on_progress)
        return runner.run(forced)


class _Runner:
    """One run of one pipeline (split from :func:`run_pipeline` to keep each part small)."""

    def __init__(self, pipeline: Pipeline, ws: Workspace, state: RunState,
                 on_event: EventFn | None, on_progress: StepProgressFn | None) -> None:
        self.pipeline, self.ws, self.state = pipeline, ws, state
        self.on_event, self.on_progress = on_event, on_progress
        self.run_id = datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.adapters = _adapters(pipeline, ws)

    def emit(self, event: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event({"event": event, **fields})

    def audit(self, action: str, step: str, details: dict[str, Any], *,
              outcome: str = "success") -> int:
        entry = self.ws.ledger.append(actor=self.ws.actor, action=action,
                                      resource=f"pipeline/{self.pipeline.name}/{step}",
                                      outcome=outcome,  # type: ignore[arg-type]
                                      details={"run": self.run_id, **details})
        return entry.seq

    def run(self, forced: frozenset[str]) -> RunResult:
        started = time.monotonic()
        self.emit("run_started", pipeline=self.pipeline.name, run=self.run_id,
                  file=self.pipeline.display, workspace=str(self.ws.root),
                  steps=list(self.pipeline.steps))
        runs: list[StepRun] = []
        done: dict[str, StepRecord] = {}
        forcing = False
        for index, name in enumerate(self.pipeline.steps):
            adapter = self.adapters[name]
            inputs = adapter.inputs(self.ws, done)
            key = step_key(kind=name, settings=adapter.settings(), inputs=inputs,
                           packages=adapter.packages)
            forcing = forcing or name in forced
            previous = self.state.steps.get(name)
            if previous is not None and previous.key == key and not forcing:
                runs.append(self.cached(previous))
            else:
                runs.append(self.execute(adapter, key, inputs, done, forcing,
                                         self.pipeline.steps[index + 1:]))
            done[name] = runs[-1].record
        result = RunResult(self.pipeline.name, self.run_id, tuple(runs),
                           round(time.monotonic() - started, 3))
        self.emit("run_finished", pipeline=self.pipeline.name, run=self.run_id,
                  seconds=result.seconds, digests=result.digests)
        return result

    def cached(self, record: StepRecord) -> StepRun:
        verify_outputs(self.ws, record)
        seq = self.audit("pipeline.step_cached", record.name, {"key": record.key})
        self.emit("step_cached", step=record.name, key=record.key, digests=record.digests,
                  summary=record.summary)
        return StepRun(record, True, (seq,))

    def execute(self, adapter: Any, key: str, inputs: dict[str, str],
                done: Mapping[str, StepRecord], force: bool,
                downstream: tuple[str, ...]) -> StepRun:
        name = adapter.name
        first = self.audit("pipeline.step_started", name, {"key": key, "inputs": inputs,
                                                           "forced": force})
        self.emit("step_started", step=name, key=key, forced=force)
        started, clock = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()
        progress = None if self.on_progress is None else (
            lambda fields: self.on_progress(name, fields))  # type: ignore[misc]
        try:
            outcome: Outcome = adapter.execute(
                self.ws, key=key, inputs=inputs, done=done, force=force, progress=progress,
                secret=lambda: self.secret(adapter))
        except BaseException as exc:
            self.audit("pipeline.step_failed", name, {"key": key, "error": type(exc).__name__},
                       outcome="failure")
            self.emit("step_failed", step=name, key=key, error=type(exc).__name__)
            raise
        seconds = round(time.monotonic() - clock, 3)
        last = self.audit("pipeline.step_finished", name, {
            "key": key, "outputs": outcome.outputs, "digests": outcome.digests})
        record = StepRecord(name=name, key=key, inputs=inputs, outputs=outcome.outputs,
                            digests=outcome.digests, config=adapter.settings(),
                            measurement=outcome.measurement,
                            ledger_seqs=list(range(first, last + 1)), summary=outcome.summary,
                            started=started, seconds=seconds)
        self.state.record(record, downstream=downstream)
        self.emit("step_finished", step=name, key=key, seconds=seconds, digests=record.digests,
                  outputs=record.outputs, summary=record.summary)
        return StepRun(record, False, tuple(record.ledger_seqs))

    def secret(self, adapter: DataAdapter) -> bytes:
        return pipeline_secret(self.ws, self.pipeline.name, adapter.keys)


def verify_outputs(ws: Workspace, record: StepRecord) -> None:
    """Check every output ``record`` lists against its recorded digest.

    Raises:
        IntegrityError: an output is missing, malformed or changed (naming step and file).
    """
    for rel, expected in record.outputs.items():
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts:
            raise IntegrityError(f"step {record.name}: the run state names {rel!r} outside "
                                 "the workspace", hint="remove the run state to rerun")
        path = ws.root / rel
        try:
            ok = path.is_file() and artifact_digest(path, expected) == expected
        except SealtuneError:
            ok = False
        if not ok:
            raise IntegrityError(
                f"step {record.name}: {rel} {'is missing' if not path.exists() else 'changed'}"
                " since the step recorded it",
                hint=f"restore it from a trusted copy, or rerun with --force-step "
                     f"{record.name} to rebuild it (replacing what is there)")
