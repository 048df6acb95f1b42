"""``steps.register``: the train step's model becomes the next registry version (``NAME@vN``).

The step calls :func:`sealtune.registry.register_model` with the train
step's job, as ``sealtune models register NAME --from-job JOB`` does, and,
with ``stage:``, promotes the version there (:func:`sealtune.registry.promote`:
a passing release-gate report for its exact digest is required, so a
pipeline that promotes needs ``steps.assess`` before it, or a gate report
made by hand). A rerun whose train step was cached adopts the version
already registered from that job instead of registering another.

What this protects against: a pipeline that releases a model the gate did
not pass (promotion fails closed, exit 4). What it does not: anything the
registry itself does not (see :mod:`sealtune.registry`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sealtune.pipeline.steps import Outcome, ProgressFn
from sealtune.yaml_source import YMap, YScalar

if TYPE_CHECKING:
    from sealtune.pipeline.state import StepRecord
    from sealtune.workspace import Workspace

KEYS = ("name", "stage")
#: Distributions whose version changes what the register step writes.
REGISTER_PACKAGES = ("model-signing", "cryptography")


@dataclass(frozen=True)
class RegisterStep:
    """``steps.register``: the registry name, and the stage to promote to (or None)."""

    name: str
    stage: str | None = None

    def settings(self) -> dict[str, Any]:
        """The step's normalised settings."""
        return {"name": self.name, "stage": self.stage}


def parse_register(section: YMap) -> RegisterStep:
    """Read ``steps.register`` (``name``, optional ``stage``: dev, staging or prod)."""
    from sealtune.pipeline.schema import _choice, _keys, _string
    from sealtune.registry.state import NAME_RE, STAGES

    path = "steps.register"
    _keys(section, path, KEYS, required=("name",))
    name = _string(section.items["name"], f"{path}.name", pattern=NAME_RE,
                   rule="1-64 letters, digits, '.', '_' or '-'")
    stage = section.items.get("stage")
    chosen = None if stage is None or (isinstance(stage, YScalar) and stage.value is None) \
        else _choice(stage, f"{path}.stage", STAGES, default=None)
    return RegisterStep(name=name, stage=chosen)


class RegisterAdapter:
    """Run ``steps.register`` (see the module docstring)."""

    name = "register"
    packages = REGISTER_PACKAGES

    def __init__(self, step: RegisterStep) -> None:
        self.step = step

    def settings(self) -> dict[str, Any]:
        """The step's normalised settings."""
        return self.step.settings()

    def inputs(self, ws: Workspace, done: Mapping[str, StepRecord]) -> dict[str, str]:
        """The trained model's files and weights (and the gate's report when it ran)."""
        train = done["train"]
        out = {**train.outputs, "weights": train.digests["weights"]}
        if "assess" in done:
            out["gate_report"] = done["assess"].digests["report"]
        return out

    def execute(self, ws: Workspace, *, key: str, inputs: Mapping[str, str],
                done: Mapping[str, StepRecord], force: bool, progress: ProgressFn | None,
                secret: Callable[[], bytes]) -> Outcome:
        """Register (or adopt the version registered from this job), then promote."""
        from sealtune.registry import list_models, promote, register_model, show_model

        job = str(done["train"].summary["job"])
        ref, adopted = None, False
        if not force:
            for row in list_models(ws):
                shown = show_model(ws, row["ref"])
                if shown["record"]["name"] == self.step.name and \
                        shown["record"]["job"] == job and not row["revoked"]:
                    ref, adopted = row["ref"], True
        if ref is None:
            ref = str(register_model(ws, self.step.name, job=job))
        if self.step.stage is not None:
            promote(ws, ref, stage=self.step.stage)
        shown = show_model(ws, ref)
        sig = shown["signature"]
        outputs = {f"registry/blobs/sha256/{sig.removeprefix('sha256:')}": sig}
        return Outcome(outputs=outputs,
                       digests={"signature": sig, "model": shown["model_digest"]},
                       summary={"ref": ref, "adopted": adopted, "stage": self.step.stage,
                                "job": job, "model_digest": shown["model_digest"]})
