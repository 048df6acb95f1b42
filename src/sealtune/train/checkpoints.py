"""Training checkpoints: the serialized state, and where it goes (a sink).

A checkpoint holds everything a run needs to continue as if it had never
stopped: the trainable weights, the optimizer and scheduler state, the random
number generators (global torch RNG, the data sampler's and the DP noise
generator's), the privacy accountant's history and the step. It is written as
safetensors (tensors) with the rest as JSON in the safetensors metadata —
never pickle — so reading a checkpoint cannot run code even if its key leaked.

The trainer hands the serialized state to a :class:`CheckpointSink`:

* :class:`MemorySink` keeps them in memory (tests, in-process use);
* :class:`SealedDirSink` seals each one (a :class:`~sealtune.keys.sealing.SealingTarget`
  whose data key was handed to the sandbox) into a directory, atomically (temp file, fsync,
  rename, fsync of the directory), and deletes the previous checkpoint as
  soon as the next one is durable, so at most one is kept. A run killed at
  any moment leaves either the previous or the new sealed checkpoint, never
  plaintext and never a half-written file under a checkpoint name.

What this does not protect against: rollback to an older sealed checkpoint
by someone who copied it (the envelope does not prevent that), and the
plaintext state held in memory while it is serialized and sealed.
"""

from __future__ import annotations

import io
import json
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.sealing import SealingTarget, unseal_into
from sealtune.outputs import fsync_dir, open_output

if TYPE_CHECKING:
    import torch

FORMAT = "sealtune-checkpoint/1"
_NAME = re.compile(r"^ckpt-(\d{10})\.sealed$")
_META_KEY = "sealtune"


@runtime_checkable
class CheckpointSink(Protocol):
    """Where the trainer puts checkpoints and finds the latest one to resume from."""

    def save(self, step: int, state: BinaryIO) -> None:
        """Store the serialized state of the run after ``step`` optimizer steps."""

    def latest(self) -> tuple[int, BinaryIO] | None:
        """The newest stored state and its step, or None (start from scratch)."""


def pack_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    """Serialize tensors plus JSON-able metadata as one safetensors blob."""
    from safetensors.torch import save

    blob = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return save(blob, metadata={_META_KEY: json.dumps({"format": FORMAT, **meta})})


def unpack_state(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of :func:`pack_state`.

    Raises:
        IntegrityError: not a sealtune checkpoint.
    """
    from safetensors.torch import load

    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        meta = json.loads(header["__metadata__"][_META_KEY])
        tensors = load(data)
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError("checkpoint is not a sealtune checkpoint",
                             hint="resume from a checkpoint this trainer wrote") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IntegrityError("checkpoint has an unknown format")
    return tensors, meta


class MemorySink:
    """Keeps checkpoints in memory: every one in :attr:`saved` (oldest first)."""

    def __init__(self) -> None:
        self.saved: list[tuple[int, bytes]] = []

    def save(self, step: int, state: BinaryIO) -> None:
        self.saved.append((step, state.read()))

    def latest(self) -> tuple[int, BinaryIO] | None:
        if not self.saved:
            return None
        step, data = self.saved[-1]
        return step, io.BytesIO(data)

    def truncate(self, step: int) -> None:
        """Forget checkpoints after ``step`` (simulates a kill right after that one)."""
        self.saved = [(s, d) for s, d in self.saved if s <= step]


class SealedDirSink:
    """Seals checkpoints into ``directory``, keeping only the newest.

    Args:
        directory: where sealed checkpoints go (created, mode 0700).
        target: the checkpoint target: the prefix and wrapped entries the parent
            (which holds the KEKs) made, with the data key handed over the key pipe.
            The same data key opens the checkpoints found.
        resume_from: a read-only directory with the sealed checkpoints of an
            earlier, interrupted run of the same job (searched after ``directory``).
    """

    def __init__(self, directory: Path, target: SealingTarget, *,
                 resume_from: Path | None = None) -> None:
        if target.data_key is None:
            raise UsageError("a sealed checkpoint sink needs the target's data key")
        self.directory = directory
        self.resume_from = resume_from
        self._target = target
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob(".ckpt-*.part"):  # ciphertext of an interrupted save
            stale.unlink(missing_ok=True)

    @staticmethod
    def _found(directory: Path | None) -> list[tuple[int, Path]]:
        if directory is None or not directory.is_dir():
            return []
        return sorted((int(m.group(1)), p) for p in directory.iterdir()
                      if (m := _NAME.match(p.name)) and p.is_file())

    def save(self, step: int, state: BinaryIO) -> None:
        final = self.directory / f"ckpt-{step:010d}.sealed"
        with open_output(final, atomic="require") as fh:  # temp file, fsync, rename, fsync dir
            self._target.seal(state, fh)
        for _, old in self._found(self.directory):
            if old != final:
                old.unlink(missing_ok=True)
        fsync_dir(self.directory)

    def latest(self) -> tuple[int, BinaryIO] | None:
        found = self._found(self.directory) + self._found(self.resume_from)
        if not found:
            return None
        step, path = max(found, key=lambda item: item[0])
        out = io.BytesIO()
        unseal_into(path, out, data_key=self._target.data_key)
        out.seek(0)
        return step, out

    def files(self) -> list[Path]:
        """The sealed checkpoints now in ``directory``."""
        return [p for _, p in self._found(self.directory)]
