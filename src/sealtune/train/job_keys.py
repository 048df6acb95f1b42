"""The data keys of a training job, unwrapped and made in this (the parent) process.

The dataset's data key is unwrapped from the sealed file's header through the
workspace's key service (audited there); fresh data keys for the model outputs
and the checkpoints are made here and wrapped under the workspace's default
key; resuming unwraps the earlier job's checkpoint key again. The keyring
itself never enters the sandbox: only these data keys do, over the key pipe.

What this protects against: the keyring or the passphrase reaching the
training code, and outputs sealed under a key the workspace cannot unwrap.
What it does not: the returned keys are plain ``bytearray`` copies in this
process's memory until the job wipes them (Python may have made other copies);
this is OS isolation, not a TEE, so root on the host can read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.core.envelope import make_prefix, new_data_key, read_header, suite_for, unlock_header
from sealtune.core.envelope import wrap_aad as _wrap_aad
from sealtune.train.worker import SealTarget

if TYPE_CHECKING:
    from sealtune.workspace import Workspace


def _file_key(ws: Workspace, path: Path) -> bytearray:
    """Unwrap a sealed file's data key through the workspace's key service (audited)."""
    with path.open("rb") as fh:
        opened = unlock_header(read_header(fh), unwrap=lambda entry, aad: ws.keys.unwrap(
            entry, aad=aad) if ws.keys.can_unwrap(entry) else None)
    return bytearray(opened.data_key)


def _new_target(ws: Workspace) -> tuple[bytearray, SealTarget]:
    key_name = ws.config.default_key
    suite = suite_for(ws.keys.info(key_name).algorithm)
    key = new_data_key(suite)
    prefix = make_prefix(key, suite=suite)
    wrapped = ws.keys.wrap(key_name, key, aad=_wrap_aad(prefix))
    return bytearray(key), SealTarget(prefix, (wrapped,))


def _old_target(ws: Workspace, rec: dict[str, Any]) -> tuple[bytearray, SealTarget]:
    """The checkpoint key of the job being resumed, unwrapped again."""
    target = SealTarget.from_dict(rec["checkpoint"], f"job {rec['id']} checkpoint")
    key = ws.keys.unwrap(target.wrapped[0], aad=_wrap_aad(target.prefix))
    return bytearray(key), target
