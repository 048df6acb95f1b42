"""A training job's canaries: the secret seed made, sealed and handed to the sandbox here.

With ``canaries: N`` in the training config, the job plants N canaries for
the release gate (:mod:`sealtune.assess.canaries`: random six-digit secrets
in customer-service turns, each included with probability 1/2 by a coin
derived from the seed, included ones repeated ``canary_repeats`` times).
The only secret is a 32-byte seed: :func:`prepare_canaries` makes it (or,
when the job resumes another, reopens that job's, so the canaries are the
same ones), seals it under the job's KEKs as
``<workspace>/jobs/<job-id>.canaries.sealed``, records the plan (counts and
the file's content digest, no secret) in the job record, and returns the
seed for the key pipe. The sandbox rebuilds the canaries from it and adds
the included ones to the training records after the validation split
(never held out); the gate rebuilds them from the same sealed seed.

What this protects against: the canary secrets, or which canaries were
included, in a log, the ledger, the job record or ``model.json`` (only
counts and a digest are there), and a resumed job training on different
canaries. What it does not: the seed is in this process's memory while the
job runs; anyone who can open the sealed seed (the job's KEKs) knows the
secrets, which is the point (the gate must).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError
from sealtune.keys.sealing import open_sealed, seal_bytes

if TYPE_CHECKING:
    from sealtune.train.config import TrainConfig
    from sealtune.workspace import Workspace

FORMAT = "pin6"
SEED_BYTES = 32


def prepare_canaries(ws: Workspace, rec: dict[str, Any], config: TrainConfig,
                     previous: dict[str, Any] | None) -> bytearray | None:
    """The job's canary seed (new, or the resumed job's), sealed and recorded; None if none."""
    if not config.canaries:
        return None
    jobs = ws.area("jobs")
    plan = (previous or {}).get("canaries")
    if previous is not None and isinstance(plan, dict):
        seed = bytearray(b"".join(open_sealed(jobs / str(plan["file"]), keys=ws.keys)))
        if len(seed) != SEED_BYTES:
            raise IntegrityError(f"the canary seed of job {previous['id']} is malformed")
    else:
        seed = bytearray(secrets.token_bytes(SEED_BYTES))
    name = f"{rec['id']}.canaries.sealed"
    sealed = seal_bytes(jobs / name, bytes(seed), keys=ws.keys,
                        key_names=rec.get("seal_keys") or [ws.config.default_key])
    rec["canaries"] = {"count": config.canaries, "repeats": config.canary_repeats,
                       "format": FORMAT, "file": name,
                       "digest": f"content-sha256:{sealed.content_sha256}"}
    ws.audit("train.canaries_planted", f"job/{rec['id']}", details={
        k: v for k, v in rec["canaries"].items() if k != "file"})
    return seed
