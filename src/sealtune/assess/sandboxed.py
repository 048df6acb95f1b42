"""The parent side of the gate's sandbox: keys in, the worker, measurements out.

:func:`measure_in_sandbox` unwraps what the worker needs through the
workspace (each unwrap audited by the key service): the data key of every
sealed model file, the dataset's, and the canary seed from the job's sealed
canary file; starts :mod:`sealtune.assess.worker` in the sandbox
(:class:`sealtune.sandbox.Sandbox`, stage ``assess``: no network, the
keyring, ledger, config and other models hidden, nothing may be left in its
output directory) with the secrets over the key pipe; and rebuilds each
probe's :class:`~sealtune.assess.probes.Measured` from the events, which
carry numbers and tokens only. The secrets are zeroed when the sandbox
ends, however it ends. The audit log records the sandbox's timeline as
every stage does (:class:`sealtune.sandbox.Timeline`: ``sandbox.created``
with the measurement of what runs and the isolation flags,
``sandbox.data_decrypted``, ``sandbox.destroyed``; each marked ``"stage":
"assess"``).

What this protects against: training data or canary secrets reaching this
process (only their keys pass through it, to the pipe), a worker that dies
or lies about its inputs (an error class or a digest mismatch fails the
run; events that break the protocol end it). What it does not: the keys are
in this process's memory while the sandbox runs; the sandbox is OS
isolation, not a TEE (see :mod:`sealtune.sandbox`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.assess.probes.base import Measured, Scalar
from sealtune.assess.worker import AssessSpec
from sealtune.errors import AssessError, IntegrityError

if TYPE_CHECKING:
    from sealtune.assess.target import Target
    from sealtune.sandbox import SandboxSpec, Timeline
    from sealtune.workspace import Workspace

WORKER = "sealtune.assess.worker"
#: The code measured into ``sandbox.created``: the sealtune package the sandbox runs.
CODE_DIR = Path(__file__).resolve().parents[1]


def _secrets(ws: Workspace, target: Target, sealed: list[str], spec: AssessSpec
             ) -> dict[str, bytearray]:
    from sealtune.assess._sealing import open_small
    from sealtune.train.jobs.keys import dataset_key as data_key

    keys = {f"model.{i}": data_key(ws, target.root / f"{name}.sealed")
            for i, name in enumerate(sealed)}
    if spec.dataset and target.dataset is not None:
        keys["dataset"] = data_key(ws, target.dataset)
    if spec.canaries is not None and target.canaries is not None:
        keys["canaries"] = bytearray(open_small(target.canaries.file, keys=ws.keys))
    return keys


def build_spec(target: Target, probes: Mapping[str, Mapping[str, Any]], *, model_digest: str,
               threads: int) -> tuple[AssessSpec, list[str]]:
    """The worker's spec and the sealed model files' names (the key order)."""
    sealed = sorted(p.name[: -len(".sealed")] for p in target.root.iterdir()
                    if p.is_file() and p.name.endswith(".sealed"))
    plan = target.canaries
    spec = AssessSpec(
        model_sealed=tuple(sealed), model_digest=model_digest, adapter=target.adapter,
        base=target.base is not None, dataset=target.dataset is not None,
        val_size=target.val_size, seed=target.seed, max_length=target.max_length,
        canaries=None if plan is None else {"count": plan.count, "repeats": plan.repeats,
                                            "format": plan.format},
        dp=None if target.dp is None else {"epsilon": target.dp.epsilon,
                                           "delta": target.dp.delta},
        probes=probes, threads=threads)
    return spec, sealed


def measure_in_sandbox(ws: Workspace, target: Target, probes: Mapping[str, Mapping[str, Any]],
                       *, model_digest: str, threads: int | None = None,
                       timeout: float | None = None, bwrap: str = "bwrap",
                       tmpfs_size: int = 1 << 30) -> dict[str, Measured]:
    """Run the sandboxed probes; return each one's measurements by name.

    Raises:
        SandboxUnavailableError: no working sandbox here.
        AssessError: the worker failed (by error class).
        IntegrityError: the worker loaded another model than the one scanned.
    """
    from sealtune.sandbox import SandboxSpec
    from sealtune.train.worker import OFFLINE_ENV

    total = threads or os.cpu_count() or 1
    spec, sealed = build_spec(target, probes, model_digest=model_digest, threads=total)
    inputs = {"model": target.root}
    if target.base is not None:
        inputs["base"] = target.base.path
    if spec.dataset and target.dataset is not None:
        inputs["dataset"] = target.dataset
    keys = _secrets(ws, target, sealed, spec)
    collector = _Collector()
    try:
        with tempfile.TemporaryDirectory(prefix="sealtune-assess-") as out:
            box_spec = SandboxSpec(
                output_dir=Path(out), inputs=inputs, tmpfs_size=tmpfs_size, bwrap=bwrap,
                hidden=(ws.keyfile_path, ws.ledger_path, ws.config_path),
                env={**OFFLINE_ENV, "OMP_NUM_THREADS": str(total)}, outputs=(),
                stage="assess")
            _run(ws, box_spec, spec, keys, collector, timeout)
    finally:
        for key in keys.values():
            key[:] = bytes(len(key))
    return collector.result()


def _timeline(ws: Workspace, box_spec: SandboxSpec, spec: AssessSpec) -> Timeline:
    """The sandbox's ledger timeline, measured as training measures its own."""
    from sealtune.sandbox import Timeline, measure

    def record(action: str, details: Mapping[str, Any], *, at: float | None = None,
               outcome: str = "success") -> None:
        ws.audit(action, "assess", outcome="failure" if outcome == "failure" else "success",
                 details=dict(details))

    config = json.dumps({k: v for k, v in spec.to_dict().items() if k != "threads"},
                        sort_keys=True).encode()
    measurement = measure(code=[CODE_DIR], config=config,
                          base_model=box_spec.inputs.get("base"),
                          inputs={k: v for k, v in box_spec.inputs.items() if k != "base"})
    return Timeline(box_spec, record, measurement={**measurement.to_dict(),
                                                   "digest": measurement.digest})


def _run(ws: Workspace, box_spec: SandboxSpec, spec: AssessSpec, keys: dict[str, bytearray],
         collector: _Collector, timeout: float | None) -> None:
    from sealtune.sandbox import Sandbox

    timeline = _timeline(ws, box_spec, spec)
    with Sandbox(box_spec) as box:
        box.start(WORKER, ["--spec-json", json.dumps(spec.to_dict())], secrets=keys)
        try:
            for event in box.events(timeout=timeout):
                timeline.observe(event)
                collector.handle(event.type, event.name, dict(event.fields))
        finally:
            timeline.destroyed(box.destroy(), exit_code=box.exit_code,
                               wiped=collector.wiped)
    collector.raise_if_failed()


class _Collector:
    """Rebuilds :class:`Measured` values from the worker's events."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Scalar]]] = {}
        self.done: dict[str, Measured] = {}
        self.errors: list[str] = []
        self.loaded = False
        self.wiped: object = None

    def handle(self, kind: str, name: str, fields: dict[str, Scalar]) -> None:
        if kind == "error":
            self.errors.append(str(fields.get("kind")))
            return
        probe = fields.pop("probe", None)
        if name == "workspace_wiped":
            self.wiped = fields.get("files")
        elif name == "model_loaded":
            self.loaded = True
        elif name == "row" and isinstance(probe, str):
            self.rows.setdefault(probe, []).append(fields)
        elif name == "measured" and isinstance(probe, str):
            sent = fields.pop("rows_sent", None)
            rows = self.rows.pop(probe, [])
            if sent != len(rows):
                raise IntegrityError(f"probe {probe}: the sandbox lost measurement rows")
            self.done[probe] = Measured(probe, scalars=fields, rows=tuple(rows))
        elif name == "measure_skipped" and isinstance(probe, str):
            self.done[probe] = Measured(probe, skipped=str(fields.get("reason") or "skipped"))

    def raise_if_failed(self) -> None:
        if "IntegrityError" in self.errors:
            raise IntegrityError("the model in the sandbox is not the model the gate scanned, "
                                 "or a sealed file failed its check",
                                 hint="restore the model from a trusted copy")
        if self.errors or not self.loaded:
            raise AssessError("the gate's sandboxed probes failed: "
                              + (", ".join(self.errors) or "the model was not loaded"),
                              hint="check that the model loads with transformers "
                                   "(safetensors, no remote code)")

    def result(self) -> dict[str, Measured]:
        return dict(self.done)
