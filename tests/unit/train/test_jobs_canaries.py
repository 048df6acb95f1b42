"""A job's canary seed: made, sealed under the job's keys, reused on resume, never recorded."""

from __future__ import annotations

import json

from sealtune.assess.canaries import canaries_from_seed
from sealtune.keys.sealing import open_sealed
from sealtune.train.config import TrainConfig
from sealtune.train.jobs.canaries import prepare_canaries
from sealtune.workspace import Workspace


def _rec(job: str) -> dict[str, object]:
    return {"id": job, "seal_keys": ["k1", "k2"]}


def test_no_canaries_no_seed(workspace: Workspace) -> None:
    rec = _rec("job-a")
    assert prepare_canaries(workspace, rec, TrainConfig(), None) is None
    assert "canaries" not in rec


def test_the_seed_is_sealed_recorded_by_digest_and_reused_on_resume(
        workspace: Workspace) -> None:
    (workspace.root / "jobs").mkdir()
    config = TrainConfig(canaries=8, canary_repeats=2)
    first = _rec("job-a")
    seed = prepare_canaries(workspace, first, config, None)
    assert seed is not None and len(seed) == 32
    plan = first["canaries"]
    assert isinstance(plan, dict) and plan["count"] == 8 and plan["repeats"] == 2
    sealed = workspace.root / "jobs" / plan["file"]
    assert b"".join(open_sealed(sealed, keys=workspace.keys)) == bytes(seed)
    assert bytes(seed) not in sealed.read_bytes()
    resumed = _rec("job-b")
    again = prepare_canaries(workspace, resumed, config, {**first})
    assert again == seed  # the same canaries after a resume
    secrets = [c.secret for c in canaries_from_seed(seed, count=8, repeats=2)]
    events = [json.dumps(e.details) for e in workspace.ledger.entries(
        action="train.canaries_planted")]
    assert len(events) == 2
    for text in [*events, json.dumps(first), json.dumps(resumed)]:
        assert not any(s in text for s in secrets) and seed.hex() not in text


def test_canary_records_join_the_training_part_after_the_split(tmp_path: object) -> None:
    from pathlib import Path

    import torch

    from sealtune.assess.canaries import canary_records, filler_records
    from sealtune.train.tiny import make_tiny
    from sealtune.train.trainer import train

    torch.set_num_threads(1)
    root = Path(str(tmp_path))
    canaries = canaries_from_seed(bytes(range(32)), count=6, repeats=2)
    extra = canary_records(canaries)
    result = train(filler_records(10, seed=0), base_dir=make_tiny(root / "tiny"),
                   out_dir=root / "out", extra_records=extra,
                   config=TrainConfig(max_steps=1, val_size=2, max_length=64, batch_size=4))
    assert result.validation is not None and result.validation["examples"] == 2
    assert result.data["examples"] == 8 + len(extra)  # canaries trained on, never held out
