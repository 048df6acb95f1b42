"""KeyService: the one place stages create, use, rotate and destroy keys.

It keeps the workspace key catalogue (name -> backend, algorithm) in the
sealed keyring file, dispatches to the backend that holds each key, and
appends an audit-ledger event for every key operation (create, rotate,
retire, destroy, wrap, unwrap, and failures). Events carry key names,
versions and outcomes only: never key material.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import (
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    SealtuneError,
    UsageError,
)
from sealtune.keys.base import ALGORITHMS, Algorithm, KeyInfo, Keyring, WrappedKey, keyring_for
from sealtune.keys.versions import VersionLock
from sealtune.ledger.entry import Outcome

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CATALOGUE = "catalogue"


def check_key_name(name: str) -> None:
    """Refuse key names that are not safe as labels, URIs and file names."""
    if not _NAME.match(name):
        raise UsageError(
            f"invalid key name {name!r}",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


class KeyService:
    """Key operations for one workspace, with catalogue and audit events."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._backends: dict[str, Keyring] = {}
        self.version_lock = VersionLock(workspace.root)

    # -- helpers ---------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The workspace directory (where the version lock and the inventory live)."""
        return self._ws.root

    def backend(self, name: str) -> Keyring:
        """Return (and cache) the keyring for backend ``name``."""
        if name not in self._backends:
            self._backends[name] = keyring_for(self._ws, name)
        return self._backends[name]

    def _record(self, name: str) -> dict[str, Any]:
        rec = self._ws.keyfile.get(CATALOGUE, name)
        if rec is None:
            raise KeyNotFoundError(
                f"no key named {name!r} in this workspace",
                hint="list keys with 'sealtune keys list'",
            )
        return rec

    def audit(
        self,
        action: str,
        resource: str,
        *,
        outcome: Outcome = "success",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an event to the workspace's audit ledger."""
        self._ws.audit(action, resource, outcome=outcome, details=details)

    # -- lifecycle -------------------------------------------------------------

    def create(
        self, name: str, *, backend: str = "local", algorithm: Algorithm = "aes-256-gcm"
    ) -> KeyInfo:
        """Create KEK ``name`` in ``backend`` and record it in the catalogue."""
        check_key_name(name)
        if algorithm not in ALGORITHMS:
            raise UsageError(
                f"unknown algorithm {algorithm!r}", hint=f"use one of: {', '.join(ALGORITHMS)}"
            )
        record = {
            "backend": backend,
            "algorithm": algorithm,
            "state": "creating",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        # Reserve the name atomically (check and insert under the keyring lock), so
        # two processes creating the same name cannot both succeed.
        with self._ws.keyfile.transaction() as doc:
            existing = doc.get(CATALOGUE, {}).get(name)
            if existing is not None and existing.get("state") == "creating":
                raise UsageError(
                    f"an earlier create of key {name!r} was interrupted before it finished",
                    hint=f"clear it with 'sealtune keys destroy {name} --yes' (this also "
                    "destroys whatever the backend made), then create it again (under "
                    "another name if the backend had made it: destroyed names stay used)",
                )
            if existing is not None:
                raise UsageError(
                    f"a key named {name!r} already exists",
                    hint="choose another name, or rotate the existing key",
                )
            doc.setdefault(CATALOGUE, {})[name] = record
        try:
            info = self.backend(backend).create(name, algorithm=algorithm)
        except SealtuneError as exc:
            self._ws.keyfile.delete(CATALOGUE, name)
            self.audit(
                "key.create",
                f"{backend}:{name}",
                outcome="failure",
                details={"error": type(exc).__name__},
            )
            raise
        self._ws.keyfile.put(CATALOGUE, name, {**record, "state": "active"})
        self.audit(
            "key.create", info.uri, details={"algorithm": algorithm, "version": info.current}
        )
        return info

    def info(self, name: str) -> KeyInfo:
        """Describe key ``name`` (from its backend; destroyed keys from the catalogue)."""
        rec = self._record(name)
        if rec["state"] in ("destroyed", "creating"):
            return KeyInfo(
                name=name,
                backend=rec["backend"],
                algorithm=rec["algorithm"],
                current=0,
                versions=(),
                state=rec["state"],
                created=rec["created"],
            )
        return self.backend(rec["backend"]).describe(name)

    def list(self) -> list[KeyInfo]:
        """Describe every key in the catalogue, sorted by name."""
        return [self.info(name) for name in sorted(self._ws.keyfile.items(CATALOGUE))]

    def rotate(self, name: str) -> KeyInfo:
        """Make a new version of ``name`` current."""
        rec = self._live(name)
        info = self.backend(rec["backend"]).rotate(name)
        self.audit("key.rotate", info.uri, details={"version": info.current})
        return info

    def retire(self, name: str, *, below: int) -> KeyInfo:
        """Destroy the versions of ``name`` lower than ``below``.

        Holds the version lock exclusively, so no seal that wrapped under a
        removed version publishes its file afterwards (see :mod:`sealtune.keys.versions`).
        This does not check which files still need those versions:
        :func:`sealtune.keys.rotation.retire_checked` does.
        """
        rec = self._live(name)
        with self.version_lock.exclusive():
            info = self.backend(rec["backend"]).retire(name, below=below)
        self.audit("key.retire", info.uri, details={"below": below})
        return info

    def destroy(self, name: str) -> None:
        """Destroy every version of ``name``: files sealed only under it become unreadable.

        A key whose create was interrupted (state ``creating``; nothing can have
        been sealed under it: it is refused for use) is destroyed in its backend
        if it got that far (the name then stays used, like every destroyed
        name); if it did not, the catalogue entry is removed and the name is free.
        """
        rec = self._record(name)
        if rec["state"] == "creating":
            self._clear_interrupted(name, rec)
            return
        rec = self._live(name)
        with self.version_lock.exclusive():
            self.backend(rec["backend"]).destroy(name)
            with self._ws.keyfile.transaction() as doc:
                doc[CATALOGUE][name]["state"] = "destroyed"
        self.audit("key.destroy", f"{rec['backend']}:{name}")

    def _clear_interrupted(self, name: str, rec: dict[str, Any]) -> None:
        """Finish an interrupted create: destroy what the backend made, free or bury the name."""
        try:
            self.backend(rec["backend"]).destroy(name)
            made = True  # the backend keeps a tombstone: the name stays used
        except KeyNotFoundError:
            made = False  # the backend never made it: the name is free again
        with self._ws.keyfile.transaction() as doc:
            entry = doc.get(CATALOGUE, {}).get(name)
            if entry is not None and entry.get("state") == "creating":
                if made:
                    entry["state"] = "destroyed"
                else:
                    del doc[CATALOGUE][name]
        self.audit("key.destroy", f"{rec['backend']}:{name}",
                   details={"interrupted_create": True, "backend_had_it": made})

    def _live(self, name: str) -> dict[str, Any]:
        rec = self._record(name)
        if rec["state"] == "destroyed":
            raise KeyDestroyedError(f"key {name!r} was destroyed")
        if rec["state"] == "creating":
            raise KeyNotFoundError(
                f"key {name!r} was never finished (its create was interrupted)",
                hint=f"clear it with 'sealtune keys destroy {name} --yes' and create it again",
            )
        return rec

    # -- use ---------------------------------------------------------------------

    def wrap(self, name: str, data_key: bytes, *, aad: bytes) -> WrappedKey:
        """Wrap ``data_key`` under the current version of ``name``."""
        rec = self._live(name)
        wrapped = self.backend(rec["backend"]).wrap(name, data_key, aad=aad)
        self.audit("key.wrap", wrapped.kek_uri, details={"version": wrapped.version})
        return wrapped

    def can_unwrap(self, wrapped: WrappedKey) -> bool:
        """True if the catalogue has a live key for this wrapped entry."""
        rec = self._ws.keyfile.get(CATALOGUE, wrapped.name)
        return rec is not None and rec["backend"] == wrapped.backend and rec["state"] == "active"

    def unwrap_if_held(self, wrapped: WrappedKey, aad: bytes) -> bytes | None:
        """The ``unwrap`` callback of :func:`sealtune.core.envelope.unlock_header`.

        Returns None for a KEK this workspace does not hold (the reader tries the
        file's next entry) and raises ``KeyDestroyedError`` for one it destroyed,
        so a file that only a destroyed key opened says so (exit 3), not "no key".
        """
        if self.can_unwrap(wrapped):
            return self.unwrap(wrapped, aad=aad)
        rec = self._ws.keyfile.get(CATALOGUE, wrapped.name)
        if rec is not None and rec["backend"] == wrapped.backend and rec["state"] == "destroyed":
            raise KeyDestroyedError(f"key {wrapped.kek_uri} was destroyed; data wrapped only "
                                    "under it is unrecoverable")
        return None

    def unwrap(self, wrapped: WrappedKey, *, aad: bytes) -> bytes:
        """Unwrap a data key; audit-logs success and failure."""
        try:
            rec = self._live(wrapped.name)
            if rec["backend"] != wrapped.backend:
                raise KeyNotFoundError(
                    f"key {wrapped.name!r} is held by backend {rec['backend']!r}, "
                    f"not {wrapped.backend!r}"
                )
            key = self.backend(wrapped.backend).unwrap(wrapped, aad=aad)
        except (IntegrityError, KeyNotFoundError, KeyDestroyedError) as exc:
            self.audit(
                "key.unwrap",
                wrapped.kek_uri,
                outcome="failure",
                details={"version": wrapped.version, "error": type(exc).__name__},
            )
            raise
        self.audit("key.unwrap", wrapped.kek_uri, details={"version": wrapped.version})
        return key
