"""What the gate assesses: the model (a workspace model or a directory), its base, its record.

:func:`resolve_target` turns ``sealtune assess MODEL [--base REF]`` into a
:class:`Target`:

* ``MODEL`` is a workspace model name (``<workspace>/models/<name>/``, its
  files sealed, its training record ``model.json`` beside them) or a model
  directory (plain, or sealed with this workspace's keys);
* the base is ``--base`` (a registered base name, verified, or a plain
  directory, unpinned and warned: :mod:`sealtune.assess.bases`), else the
  base ``model.json`` names, which must still have the digest recorded at
  training (an :class:`~sealtune.errors.IntegrityError` otherwise);
* from ``model.json`` (numbers and names only): the dataset and the split
  settings (for held-out records), the canary plan and the sealed canary
  file, the DP claim (ε spent, δ), the training job.

What this protects against: assessing a model against a base other than the
one it was trained on (digest check), a malformed training record steering
the gate (every field is type-checked; a bad one is an error, not ignored).
What it does not: ``model.json`` is unsigned; a forged one can make probes
skip (no canaries, no dataset). The report says which probes ran, and the
policy's ``required`` makes a missing one fail the gate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.assess.bases import BaseModel, registered_at, resolve_base
from sealtune.assess.files import SEALED_SUFFIX, ModelTree, PlainTree, SealedTree
from sealtune.assess.probes.context import DpClaim
from sealtune.errors import ConfigError, IntegrityError

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

MODELS = "models"
MANIFEST = "model.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class CanaryPlan:
    """The canaries a job planted (no secret): how many, how often, the format, the file."""

    count: int
    repeats: int
    format: str
    file: Path


@dataclass
class Target:
    """A model to assess and everything known about it (no plaintext data).

    Attributes:
        name: the workspace model name, or None for a directory.
        source: ``workspace`` or ``directory``.
        root: the model directory.
        tree: its files.
        adapter: a LoRA adapter (served over its base).
        base: the base model, or None.
        record: ``model.json`` (empty for a directory without one).
        dataset: the sealed dataset file it was trained on, if known and present.
        val_size, seed, max_length: the training split and encoding settings.
        canaries: the canary plan, if the job planted canaries.
        dp: the DP claim, if the job trained with DP.
    """

    name: str | None
    source: str
    root: Path
    tree: ModelTree
    adapter: bool
    base: BaseModel | None
    record: dict[str, Any] = field(default_factory=dict)
    dataset: Path | None = None
    val_size: int | float = 0
    seed: int = 0
    max_length: int = 512
    canaries: CanaryPlan | None = None
    dp: DpClaim | None = None

    @property
    def job(self) -> str | None:
        job = self.record.get("job")
        return job if isinstance(job, str) and _NAME.match(job) else None

    @property
    def weights_sha256(self) -> str | None:
        value = self.record.get("weights_sha256")
        return value if isinstance(value, str) and re.fullmatch(r"sha256:[0-9a-f]{64}",
                                                                value) else None


def resolve_target(ws: Workspace, model: str, *, base: str | None, warn: bool = True
                   ) -> Target:
    """Resolve ``MODEL`` and ``--base`` (see the module docstring).

    ``warn``: warn when the base is an unpinned directory (the pipeline reports it in
    its step summary instead); the audit log records ``base.unpinned`` either way.

    Raises:
        ConfigError: no such model; a malformed ``model.json``; an adapter without base.
        IntegrityError: the base differs from the one recorded at training, or a
            registered base changed.
    """
    root, source, name = _model_dir(ws, model)
    sealed = any(p.name.endswith(SEALED_SUFFIX) for p in root.iterdir() if p.is_file())
    tree: ModelTree = SealedTree(root, keys=ws.keys) if sealed else PlainTree(root)
    names = {e.name for e in tree.entries() if e.kind == "file"}
    record = _record(root)
    target = Target(name=name, source=source, root=root, tree=tree,
                    adapter="adapter_config.json" in names and "config.json" not in names,
                    base=_base(ws, record, base, warn=warn), record=record)
    if record:
        _training(ws, target, record)
    if target.adapter and target.base is None:
        raise ConfigError(f"{root} is a LoRA adapter and names no base model",
                          hint="pass --base NAME|DIR: the base it was trained on")
    return target


def _model_dir(ws: Workspace, model: str) -> tuple[Path, str, str | None]:
    if _NAME.match(model) and (ws.area(MODELS) / model).is_dir():
        return (ws.area(MODELS) / model).absolute(), "workspace", model
    path = Path(model)
    if not path.is_dir():
        raise ConfigError(f"no workspace model or model directory named {model!r}",
                          hint="pass a model directory, or the --out-name of a training run")
    return path.resolve(), "directory", None


def _record(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        raise ConfigError(f"{path} is not valid JSON",
                          hint="restore the model directory from a trusted copy") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return record


def _base(ws: Workspace, record: dict[str, Any], ref: str | None, *,
          warn: bool) -> BaseModel | None:
    recorded = record.get("base")
    if recorded is not None and not isinstance(recorded, dict):
        raise ConfigError("model.json: base must be an object")
    if ref is not None:
        chosen = resolve_base(ws, ref, warn=warn)
    elif recorded and isinstance(recorded.get("path"), str):
        name = registered_at(ws, Path(recorded["path"]), recorded.get("digest"))
        chosen = resolve_base(ws, name or recorded["path"], warn=warn)
    else:
        return None
    expected = (recorded or {}).get("digest")
    if expected is not None and chosen.digest != expected:
        raise IntegrityError("the base model is not the one the model was trained on (its "
                             "digest differs from model.json)",
                             hint="pass --base with the exact base model used in training")
    return chosen


def _training(ws: Workspace, target: Target, record: dict[str, Any]) -> None:
    """Fill the split settings, dataset, canary plan and DP claim from ``model.json``."""
    from sealtune.train.config import TrainConfig

    try:
        config = TrainConfig.from_dict(record.get("config") or {})
    except ConfigError:
        raise ConfigError("model.json: its training config is invalid",
                          hint="restore the model directory from a trusted copy") from None
    target.val_size, target.seed, target.max_length = (config.val_size, config.seed,
                                                       config.max_length)
    dataset = record.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("name"), str) and \
            _NAME.match(dataset["name"]):
        target.dataset = _dataset_file(ws, dataset["name"], dataset.get("digest"))
    target.canaries = _canaries(ws, record.get("canaries"))
    privacy = record.get("privacy")
    if isinstance(privacy, dict):
        eps, delta = privacy.get("epsilon_spent"), privacy.get("delta")
        if isinstance(eps, int | float) and isinstance(delta, int | float):
            target.dp = DpClaim(float(eps), float(delta))


def _dataset_file(ws: Workspace, name: str, digest: object) -> Path | None:
    """The dataset's sealed data file if it is still in the catalogue and matches."""
    from sealtune.data.store import show_dataset
    from sealtune.keys.content import labelled_digest

    root = ws.area("datasets") / name
    if not root.is_dir():
        return None
    path = show_dataset(ws, name, verify=False).file("data")
    if isinstance(digest, str) and labelled_digest(path) != digest:
        raise IntegrityError(f"dataset {name!r} is not the one the model was trained on",
                             hint="assess with the dataset the model's record names")
    return path


def _canaries(ws: Workspace, plan: object) -> CanaryPlan | None:
    if plan is None:
        return None
    if not isinstance(plan, dict) or not all(
            isinstance(plan.get(k), int) and not isinstance(plan.get(k), bool)
            for k in ("count", "repeats")) or not isinstance(plan.get("file"), str):
        raise ConfigError("model.json: canaries must name count, repeats, format and file")
    file = ws.area("jobs") / Path(plan["file"]).name
    if not file.is_file():
        raise ConfigError("model.json: its sealed canary file is missing from the workspace",
                          hint="the canaries are needed to assess exposure; restore "
                               f"{file.name} into the workspace's jobs directory")
    return CanaryPlan(plan["count"], plan["repeats"], str(plan.get("format", "pin6")), file)
