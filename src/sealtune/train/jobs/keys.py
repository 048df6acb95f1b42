"""The data keys of a training job, unwrapped and made in this (the parent) process.

The dataset's data key is unwrapped from the sealed file's header through the
workspace's key service (audited there); fresh sealing targets for the model
outputs and the checkpoints (:func:`sealtune.keys.sealing.new_target`: a data
key, its prefix, the key wrapped) are made here under the job's KEKs: by
default the live KEKs the dataset itself is wrapped under
(:func:`dataset_keks`, read from its header), so whoever can open the dataset
can open what was trained on it, and destroying the customer's key shreds
both. Resuming unwraps the earlier job's checkpoint key again, from the
header of its newest sealed checkpoint (which a rotation may have re-wrapped
since), not from the job record. The keyring itself never enters the
sandbox: only these data keys do, over the key pipe.

What this protects against: the keyring or the passphrase reaching the
training code; outputs sealed under a key the workspace cannot unwrap;
weights that outlive the customer key of their data (sealed under the
platform key only). What it does not: the returned keys are plain
``bytearray`` copies in this process's memory until the job wipes them
(Python may have made other copies); this is OS isolation, not a TEE, so
root on the host can read them. A job given ``--key`` seals under exactly
those keys, even if that leaves out the dataset's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import (
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    SealtuneError,
    UsageError,
)
from sealtune.keys.files import describe_file
from sealtune.keys.sealing import SealingTarget, file_target, new_target

if TYPE_CHECKING:
    from sealtune.workspace import Workspace


def dataset_key(ws: Workspace, path: Path) -> bytearray:
    """Unwrap a sealed file's data key through the workspace's key service (audited)."""
    key = file_target(path, keys=ws.keys).data_key
    assert key is not None  # file_target always unwraps it
    return key


def dataset_keks(ws: Workspace, data_path: Path) -> list[str]:
    """The names of the live KEKs the dataset's data file is wrapped under, in header order.

    Raises:
        KeyDestroyedError: every one of them that this workspace holds was destroyed.
        KeyNotFoundError: none of them is a live key of this workspace.
    """
    names: list[str] = []
    destroyed = False
    for entry in describe_file(data_path).entries:
        name = entry.kek_uri.split(":", 1)[1]
        try:
            info = ws.keys.info(name)
        except SealtuneError:
            continue  # a key this workspace lacks, or whose backend is unreachable
        destroyed = destroyed or (info.uri == entry.kek_uri and info.state == "destroyed")
        if info.uri == entry.kek_uri and info.state == "active" and name not in names:
            names.append(name)
    if names:
        return names
    if destroyed:
        raise KeyDestroyedError(f"{data_path}: the keys the dataset is sealed under were "
                                "destroyed: it is unrecoverable")
    raise KeyNotFoundError(f"{data_path}: none of the keys the dataset is sealed under is "
                           "a live key of this workspace",
                           hint="name the keys to seal the model under with --key")


def check_job_keys(key_names: Sequence[str]) -> list[str]:
    """A non-empty list of distinct key names (``--key``)."""
    names = list(key_names)
    if not names or len(set(names)) != len(names):
        raise UsageError("name one or more distinct keys to seal the model under (--key)")
    return names


def output_target(ws: Workspace, key_names: Sequence[str]) -> SealingTarget:
    """A fresh data key, wrapped under each of ``key_names`` (the first picks the suite)."""
    return new_target(ws.keys, check_job_keys(key_names))


def resumed_target(ws: Workspace, rec: dict[str, Any], checkpoints: Path) -> SealingTarget:
    """The checkpoint target of the job being resumed, from its newest sealed checkpoint.

    The header is read from the file, not from the job record: a rotation
    re-wraps the file (the record keeps the wrap of the job's start, which a
    retirement makes useless), and the resumed job seals its own checkpoints
    with the same, current, entries.
    """
    newest = max(checkpoints.glob("ckpt-*.sealed"))
    current = file_target(newest, keys=ws.keys)
    recorded = SealingTarget.from_dict(rec["checkpoint"], f"job {rec['id']} checkpoint")
    if current.prefix.encode() != recorded.prefix.encode():
        current.wipe()
        raise IntegrityError(f"{newest} is not a checkpoint of job {rec['id']}",
                             hint="resume from the job's own checkpoint directory")
    return current
