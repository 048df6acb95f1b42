"""Capture and restore a run's full state, for checkpoints that resume exactly.

The state is: the trainable weights; the optimizer state (AdamW moments, per
parameter, in parameter order) and its parameter groups; the learning-rate
scheduler; the random streams (torch's global generator — dropout —, the DP
sampler's and the DP noise generator's, Python's ``random``); the privacy
accountant's history; the step, the loss history and the epoch reports (with
their held-out losses, so a resumed job reports every epoch). The data order
without DP is a pure function of ``(seed, epoch)``, so it needs no state.

A checkpoint is accepted only for the same training settings and the same
tokenized data, training and held-out (all fingerprinted); otherwise resuming
fails closed.
"""

from __future__ import annotations

import io
import random
from typing import Any, BinaryIO

from sealtune.errors import ConfigError, IntegrityError
from sealtune.train.checkpoints import pack_state, unpack_state
from sealtune.train.metrics import EpochReport


def _optimizer_state(optimizer: Any, tensors: dict[str, Any]) -> dict[str, Any]:
    import torch

    state = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{key}"] = value
            else:
                scalars[f"{index}/{key}"] = value
    return {"param_groups": state["param_groups"], "scalars": scalars}


def _load_optimizer(optimizer: Any, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def snapshot_state(run: Any) -> BinaryIO:
    """Serialize the run's state after ``run.step`` steps."""
    import torch

    tensors: dict[str, Any] = {f"param/{n}": p for n, p in run.trainable}
    tensors["rng/torch"] = torch.get_rng_state()
    if run.dp is not None and run.dp.sample_gen is not None:
        tensors["rng/sample"] = run.dp.sample_gen.get_state()
        tensors["rng/noise"] = run.dp.noise_gen.get_state()
    meta = {
        "step": run.step, "config": run.config.fingerprint(), "data": run.data.digest(),
        "losses": run.losses, "optimizer": _optimizer_state(run.optimizer, tensors),
        "scheduler": run.scheduler.state_dict(), "python_rng": random.getstate(),
        "dp": None if run.dp is None else run.dp.state(),
        "eval_data": run.eval_digest(), "epochs": [e.to_dict() for e in run.epochs],
    }
    return io.BytesIO(pack_state(tensors, meta))


def restore_state(run: Any) -> int | None:
    """Load the sink's latest checkpoint into the run; return its step (None: fresh start).

    Raises:
        ConfigError: the checkpoint belongs to other settings or other data.
        IntegrityError: the checkpoint is malformed or its step does not match its name.
    """
    import torch

    found = None if run.sink is None else run.sink.latest()
    if found is None:
        return None
    step, stream = found
    tensors, meta = unpack_state(stream.read())
    if meta.get("step") != step:
        raise IntegrityError("checkpoint step does not match its name")
    if (meta.get("config") != run.config.fingerprint() or meta.get("data") != run.data.digest()
            or meta.get("eval_data") != run.eval_digest()):
        raise ConfigError("the checkpoint belongs to a run with other settings or other data",
                          hint="resume with the same job spec and dataset, or start afresh")
    with torch.no_grad():
        for name, param in run.trainable:
            param.copy_(tensors[f"param/{name}"])
    _load_optimizer(run.optimizer, meta["optimizer"], tensors)
    run.scheduler.load_state_dict(meta["scheduler"])
    if run.dp is not None:
        run.dp.load_state(meta["dp"])
        if run.dp.sample_gen is not None:
            run.dp.sample_gen.set_state(tensors["rng/sample"])
            run.dp.noise_gen.set_state(tensors["rng/noise"])
    version, internal, gauss = meta["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(tensors["rng/torch"])
    run.step = step
    run.losses = list(meta["losses"])
    run.epochs = [EpochReport.from_dict(e) for e in meta.get("epochs", [])]
    return int(step)
