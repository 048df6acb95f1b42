"""The model registry: immutable, sealed, signed versions; stages, rollback, revocation.

The public surface (loaded lazily):

* versions (:mod:`~sealtune.registry.versions`): :func:`register_model`
  (a finished job's model -> ``NAME@vN``, sealed blobs, provenance, an
  OpenSSF model-signing signature), :func:`verify_version`,
  :func:`export_version`, :class:`VersionFiles` (a version's files in memory,
  for serving);
* stages (:mod:`~sealtune.registry.lifecycle`): :func:`promote` (needs a
  passing gate report unless ``unsafe_skip_gate``), :func:`rollback`,
  :func:`revoke`, :func:`grant`, :func:`refresh`;
* views (:mod:`~sealtune.registry.views`): :func:`list_models`,
  :func:`show_model`, :func:`history`, :func:`signer_public_key`,
  :func:`expected_measurements`;
* the state (:mod:`~sealtune.registry.state`): :class:`Registry`,
  :class:`Ref`, :func:`parse_ref`, :data:`STAGES`; the running server's
  check (:mod:`~sealtune.registry.watch`): :class:`ServingGuard`.

What the registry protects against and what it does not is stated in each
module; ``docs/registry.md`` has the whole picture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.registry.lifecycle import grant, promote, refresh, revoke, rollback
    from sealtune.registry.state import STAGES, Ref, Registry, parse_ref
    from sealtune.registry.versions import (
        VersionFiles,
        export_version,
        register_model,
        verify_version,
    )
    from sealtune.registry.views import (
        expected_measurements,
        history,
        list_models,
        show_model,
        signer_public_key,
    )
    from sealtune.registry.watch import ServingGuard

__all__ = [
    "STAGES",
    "Ref",
    "Registry",
    "ServingGuard",
    "VersionFiles",
    "expected_measurements",
    "export_version",
    "grant",
    "history",
    "list_models",
    "parse_ref",
    "promote",
    "refresh",
    "register_model",
    "revoke",
    "rollback",
    "show_model",
    "signer_public_key",
    "verify_version",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("grant", "promote", "refresh", "revoke", "rollback"),
                    "sealtune.registry.lifecycle"),
    **dict.fromkeys(("STAGES", "Ref", "Registry", "parse_ref"), "sealtune.registry.state"),
    **dict.fromkeys(("VersionFiles", "export_version", "register_model", "verify_version"),
                    "sealtune.registry.versions"),
    **dict.fromkeys(("expected_measurements", "history", "list_models", "show_model",
                     "signer_public_key"), "sealtune.registry.views"),
    "ServingGuard": "sealtune.registry.watch",
})
