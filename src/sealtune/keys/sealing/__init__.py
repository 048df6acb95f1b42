"""The one sealing API the stages use: make a target, seal to it, open what was sealed.

Every sealed file the stages write (datasets, their secrets, checkpoints,
model files, pipeline secrets) is made here, in format sealed-v1
(``docs/formats/sealed-v1.md``, :mod:`sealtune.core.envelope`); nothing
outside ``core`` and ``keys`` touches the envelope itself (an import-linter
contract holds it).

* :mod:`~sealtune.keys.sealing.target`: :class:`SealingTarget` (a data key,
  its prefix and its wrapped entries), :func:`new_target` (the one place
  they are made), :func:`file_target` (those of an existing file), and how a
  target crosses into a sandbox without the keyring;
* :mod:`~sealtune.keys.sealing.writer`: :class:`SealedWriter` (a stream
  sealed as it is produced, with its content digest and the commit-time
  key-version check), :func:`seal_bytes`, :class:`SealedFile`;
* :mod:`~sealtune.keys.sealing.reader`: :func:`open_sealed`,
  :func:`open_sealed_lines`, :func:`unseal_into`, :class:`SealedSource`,
  :func:`is_sealed`, each opening with the workspace's keys or with a data key.

Whole files by path, with outputs that may be devices or pipes, and
re-wrapping, are :mod:`sealtune.keys.files`. What each part protects against
and what it does not is stated in its module.
"""

from __future__ import annotations

from sealtune.keys.sealing.reader import (
    SealedSource,
    is_sealed,
    open_sealed,
    open_sealed_lines,
    unseal_into,
)
from sealtune.keys.sealing.target import SealingTarget, file_target, new_target
from sealtune.keys.sealing.writer import SealedFile, SealedWriter, seal_bytes

__all__ = [
    "SealedFile",
    "SealedSource",
    "SealedWriter",
    "SealingTarget",
    "file_target",
    "is_sealed",
    "new_target",
    "open_sealed",
    "open_sealed_lines",
    "seal_bytes",
    "unseal_into",
]
