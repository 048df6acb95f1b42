"""Key management: the Keyring port, its backends, sealed files and key rotation.

The public surface (loaded lazily: ``import sealtune.keys`` imports none of
it until a name is used):

* sealed files: :func:`seal_file`, :func:`open_file`, :func:`verify_file`,
  :func:`describe_file`, :func:`rewrap_file` (:mod:`sealtune.keys.files`,
  :mod:`sealtune.keys.file_header`);
* the workspace's keys: :class:`KeyService` (create, wrap, unwrap, rotate,
  retire, destroy, every change in the audit log), and workspace-wide
  :func:`rotate_workspace`, :func:`retire_checked`, :func:`destroy_key`,
  :func:`destroy_impact`
  (:mod:`sealtune.keys.rotation`), :func:`unlock_workspace` /
  :func:`lock_workspace` (the kernel key cache, :mod:`sealtune.keys.unlock`);
* the Keyring port: :class:`Keyring`, :class:`KeyInfo`, :class:`WrappedKey`,
  :data:`KEYRINGS`, :func:`register_keyring`, :func:`keyring_for`
  (:mod:`sealtune.keys.base`; adapters ``local``, ``pkcs11``, ``openbao``);
* keyed primitives for the stages: :func:`derive_key`, :func:`keyed_digest`,
  :class:`TokenCipher` (:mod:`sealtune.keys.derive`), so no stage touches
  ``core.hazmat``;
* the sealing API the stages use (:mod:`sealtune.keys.sealing`), so no stage
  touches ``core.envelope``: :class:`SealingTarget`, :func:`new_target`,
  :func:`file_target` (a data key, its prefix and its wrapped entries, made
  in one place, and how they cross into a sandbox), :class:`SealedWriter`,
  :func:`seal_bytes`, :class:`SealedFile` (streams sealed as they are made),
  :func:`open_sealed`, :func:`open_sealed_lines`, :func:`unseal_into`,
  :class:`SealedSource`, :func:`is_sealed` (opened with the workspace's keys
  or a data key).

What this package protects against and what it does not is stated per
module: :mod:`sealtune.keys.base` (the port), :mod:`sealtune.keys.files`
(sealed files), :mod:`sealtune.keys.rotation` (what a rotation, retire or
destroy leaves readable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.keys.base import (
        KEYRINGS,
        KeyInfo,
        Keyring,
        WrappedKey,
        keyring_for,
        register_keyring,
    )
    from sealtune.keys.derive import TokenCipher, derive_key, keyed_digest
    from sealtune.keys.file_header import describe_file, rewrap_file
    from sealtune.keys.file_results import FileInfo, OpenResult, RewrapResult, SealResult
    from sealtune.keys.files import open_file, seal_file, verify_file
    from sealtune.keys.rotation import (
        DestroyImpact,
        RotationReport,
        destroy_impact,
        destroy_key,
        retire_checked,
        rotate_workspace,
    )
    from sealtune.keys.sealing import (
        SealedFile,
        SealedSource,
        SealedWriter,
        SealingTarget,
        file_target,
        is_sealed,
        new_target,
        open_sealed,
        open_sealed_lines,
        seal_bytes,
        unseal_into,
    )
    from sealtune.keys.service import KeyService
    from sealtune.keys.unlock import lock as lock_workspace
    from sealtune.keys.unlock import unlock as unlock_workspace

__all__ = [
    "KEYRINGS",
    "DestroyImpact",
    "FileInfo",
    "KeyInfo",
    "KeyService",
    "Keyring",
    "OpenResult",
    "RewrapResult",
    "RotationReport",
    "SealResult",
    "SealedFile",
    "SealedSource",
    "SealedWriter",
    "SealingTarget",
    "TokenCipher",
    "WrappedKey",
    "derive_key",
    "describe_file",
    "destroy_impact",
    "destroy_key",
    "file_target",
    "is_sealed",
    "keyed_digest",
    "keyring_for",
    "lock_workspace",
    "new_target",
    "open_file",
    "open_sealed",
    "open_sealed_lines",
    "register_keyring",
    "retire_checked",
    "rewrap_file",
    "rotate_workspace",
    "seal_bytes",
    "seal_file",
    "unlock_workspace",
    "unseal_into",
    "verify_file",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("KEYRINGS", "KeyInfo", "Keyring", "WrappedKey", "keyring_for",
                     "register_keyring"), "sealtune.keys.base"),
    **dict.fromkeys(("TokenCipher", "derive_key", "keyed_digest"), "sealtune.keys.derive"),
    **dict.fromkeys(("describe_file", "rewrap_file"), "sealtune.keys.file_header"),
    **dict.fromkeys(("FileInfo", "OpenResult", "RewrapResult", "SealResult"),
                    "sealtune.keys.file_results"),
    **dict.fromkeys(("open_file", "seal_file", "verify_file"), "sealtune.keys.files"),
    **dict.fromkeys(("DestroyImpact", "RotationReport", "destroy_impact", "destroy_key",
                     "retire_checked", "rotate_workspace"), "sealtune.keys.rotation"),
    **dict.fromkeys(("SealedFile", "SealedSource", "SealedWriter", "SealingTarget",
                     "file_target", "is_sealed", "new_target", "open_sealed",
                     "open_sealed_lines", "seal_bytes", "unseal_into"), "sealtune.keys.sealing"),
    "KeyService": "sealtune.keys.service",
    # keys.unlock's own names are its module's name and a builtin-like "lock"
    "lock_workspace": "sealtune.keys.unlock:lock",
    "unlock_workspace": "sealtune.keys.unlock:unlock",
})
