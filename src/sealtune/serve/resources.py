"""What the monitor's per-model detectors need from the model version served: filter, canaries.

:func:`open_resources` opens the served version's sealed ``regurgitation.bloom``
(the keyed Bloom filter of its training replies) and hashes the canaries its
training job planted plus those of an operator's ``--canaries`` file. The
planted canaries are rebuilt from the job's sealed canary seed, as the
release gate does, never from a plaintext list:

* a workspace model (:func:`job_canary_secrets`): the plan in its
  ``model.json`` names the seed file and its content digest;
* a registry version (:func:`version_canary_secrets`, :func:`source_resources`):
  the plan is read from the version's own ``model.json``, which the registry
  checks against the version's signature as it is read, so the seed file
  must have the content digest that the signed record names.

The server calls these at start and again whenever it swaps to another
registry version (a stage alias moved), so each version is checked against
its own filter and canaries.

What this protects against: canaries or a filter of another model (a swapped
or replaced seed file fails its digest; a tampered sealed file its
authentication), and canary secrets written down in the clear. What it does
not: anyone who can open the sealed seed (the job's KEKs) learns the
secrets, which is the point; a ``--canaries`` file is the operator's to
protect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import ConfigError, IntegrityError

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService
    from sealtune.serve.model import ModelFiles, ModelSource
    from sealtune.workspace import Workspace

__all__ = ["job_canary_secrets", "open_resources", "source_resources",
           "version_canary_secrets"]

_MANIFEST = "model.json"


def open_resources(files: ModelFiles | None, *, canaries: Path | None,
                   planted: list[str] | None = None) -> dict[str, Any]:
    """What detectors need from the model and the release gate: the filter, the canaries.

    Args:
        files: the served model's files (its sealed ``regurgitation.bloom``).
        canaries: a file of canary secrets, one per line (canaries planted elsewhere).
        planted: the secrets of the canaries planted by the model's own training job
            (:func:`job_canary_secrets`); the list is emptied once hashed.

    Raises:
        IntegrityError: the sealed filter failed its check, or is not a filter.
        ConfigError: the canaries file cannot be read.
    """
    from sealtune.core.bloom import BloomFilter
    from sealtune.monitor.detectors.regurgitation import FILTER_FILE, CanarySet

    out: dict[str, Any] = {}
    if files is not None and FILTER_FILE in files.names():
        out["training_filter"] = BloomFilter.from_bytes(files.read(FILTER_FILE))
    secrets = list(planted or [])
    if planted is not None:
        planted.clear()
    if canaries is not None:
        try:
            lines = canaries.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            raise ConfigError(f"cannot read the canaries file {canaries}",
                              hint="one canary secret per line, UTF-8") from None
        secrets += [line.strip() for line in lines if line.strip()]
        lines.clear()
    if secrets:
        out["canaries"] = CanarySet(secrets)
        secrets.clear()
    return out


def source_resources(ws: Workspace, source: ModelSource, *,
                     canaries: Path | None) -> dict[str, Any]:
    """:func:`open_resources` of a registry version: its signed files, its job's canaries.

    Raises:
        IntegrityError: a file fails its signature, or the canary seed its digest.
        ConfigError: the seed named by the version is missing; see :func:`open_resources`.
    """
    planted = version_canary_secrets(source.files, jobs=ws.area("jobs"), keys=ws.keys)
    return open_resources(source.files, canaries=canaries, planted=planted)


def job_canary_secrets(root: Path, keys: KeyService, model: str) -> list[str]:
    """The secrets of the canaries the workspace model ``model``'s training job planted.

    ``train --canaries N`` seals the job's canary seed under its KEKs and
    names it in ``model.json`` (counts, a file name and its content digest,
    no secret); the release gate and this server rebuild the same canaries
    from it, so an answer carrying one is a ``canary_hit`` without anyone
    writing the secrets down. Empty for a model without canaries, or not in
    the workspace.

    Raises:
        IntegrityError: the sealed seed fails its check or its recorded digest.
        ConfigError: ``model.json`` names canaries whose sealed seed is missing.
    """
    record = root / "models" / model / _MANIFEST
    if "/" in model or not record.is_file():
        return []
    return _planted(json.loads(record.read_text("utf-8")), jobs=root / "jobs", keys=keys,
                    what=f"model {model!r}")


def version_canary_secrets(files: ModelFiles, *, jobs: Path, keys: KeyService) -> list[str]:
    """The canaries a registry version's training job planted, from its signed ``model.json``.

    Raises:
        IntegrityError: ``model.json`` fails its signature, or the seed file in
            ``jobs`` is not the one it names (content digest) or fails its check.
        ConfigError: the seed file is missing.
    """
    if _MANIFEST not in files.names():
        return []
    try:
        record = json.loads(files.read(_MANIFEST))
    except ValueError:
        raise IntegrityError(f"{files.label}: {_MANIFEST} is not JSON",
                             hint="restore the registry from a trusted copy") from None
    return _planted(record, jobs=jobs, keys=keys, what=files.label)


def _planted(record: Any, *, jobs: Path, keys: KeyService, what: str) -> list[str]:
    """The secrets of the canary plan in a training record (none without a plan)."""
    from sealtune.assess.canaries import canaries_from_seed
    from sealtune.keys.content import content_digest
    from sealtune.keys.sealing import open_sealed

    plan = record.get("canaries") if isinstance(record, dict) else None
    if not isinstance(plan, dict) or not isinstance(plan.get("file"), str):
        return []
    seed_file = jobs / Path(plan["file"]).name
    if not seed_file.is_file():
        raise ConfigError(f"{what} was trained with canaries but their sealed seed "
                          f"{seed_file} is missing",
                          hint="restore it into the workspace's jobs directory")
    digest = plan.get("digest")
    if not isinstance(digest, str) or \
            content_digest(seed_file) != digest.removeprefix("content-sha256:"):
        raise IntegrityError(f"the canary seed {seed_file} is not the one {what} was trained "
                             "with", hint="restore the job's sealed seed from a trusted copy")
    seed = bytearray(b"".join(open_sealed(seed_file, keys=keys)))
    try:
        planted = canaries_from_seed(seed, count=int(plan["count"]),
                                     repeats=int(plan["repeats"]),
                                     format_name=str(plan.get("format", "pin6")))
    finally:
        seed[:] = bytes(len(seed))
    return [c.secret for c in planted]
