"""One workspace's registry: its store, signing key and current signed state.

:class:`Registry` reads the newest snapshot (verified: signature, no older
than one seen, not expired; :mod:`sealtune.registry.snapshot`) and commits
every change (a new version, an alias move, a revocation) as one catalogue
transaction that writes the next signed snapshot, then records the change
in the audit ledger. Version references are parsed here: ``NAME@vN`` or
``NAME@STAGE`` (``dev``, ``staging``, ``prod``).

What this protects against: a change that bypasses the snapshot (the
snapshot is re-read and checked inside the write transaction), a reference
that escapes the registry (names match a strict pattern). What it does not:
see :mod:`sealtune.registry.snapshot` and :mod:`sealtune.registry.store`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError, UsageError
from sealtune.registry.remote_store import RemoteRegistryStore
from sealtune.registry.signing import SigningKey, registry_key
from sealtune.registry.snapshot import (
    SeenVersion,
    Snapshot,
    canonical,
    empty_state,
    open_snapshot,
    sign_snapshot,
)
from sealtune.registry.store import RegistryStore, digest_bytes

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

STAGES = ("dev", "staging", "prod")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REF_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})@(?P<ref>v[1-9][0-9]{0,8}|"
                     r"dev|staging|prod)$")


@dataclass(frozen=True)
class Ref:
    """A resolved version reference."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}@v{self.version}"


def check_name(name: str) -> str:
    """``name`` if it is a valid model name, else a UsageError."""
    if not NAME_RE.match(name):
        raise UsageError(f"invalid model name {name!r}",
                         hint="use letters, digits, '.', '_' or '-' (at most 64)")
    return name


def parse_ref(text: str) -> tuple[str, str]:
    """``(name, 'vN' or stage)`` of ``NAME@vN`` / ``NAME@STAGE``."""
    m = _REF_RE.match(text)
    if m is None:
        raise UsageError(f"invalid version reference {text!r}",
                         hint="write NAME@vN (e.g. bot@v3) or NAME@STAGE (dev, staging, prod)")
    return m["name"], m["ref"]


class Registry:
    """The registry of workspace ``ws`` (``<workspace>/registry/``)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        root = ws.area("registry", create=True)
        self.store: RegistryStore | RemoteRegistryStore
        if ws.config.storage.is_default:
            self.store = RegistryStore(root)
        else:  # the bucket and the catalogue database that [storage] names
            self.store = RemoteRegistryStore(ws, root)
        self.seen = SeenVersion(root / "trust.json")
        self._key: SigningKey | None = None

    def close(self) -> None:
        """Close the catalogue."""
        self.store.close()

    @property
    def key(self) -> SigningKey:
        """The registry signing key (the keyring file's or the PKCS#11 token's)."""
        if self._key is None:
            self._key = registry_key(self.ws)
        return self._key

    def snapshot(self, *, now: datetime | None = None, floor: int = 0) -> Snapshot:
        """The newest snapshot, verified (and recorded as seen).

        Args:
            now: the time to check the expiry against (default: the clock).
            floor: a version the caller has seen itself (a running server's memory),
                refused like one recorded in ``trust.json``.
        """
        snap = self._read(None, now=now, floor=floor)
        self.seen.advance(snap.version)
        return snap

    def _read(self, db: Any, *, now: datetime | None = None, floor: int = 0) -> Snapshot:
        latest = self.store.latest_snapshot(db)
        if latest is None:
            if self.store.versions() or self.seen.read() or floor:
                raise IntegrityError(f"{self.store.where}: the registry's snapshots are "
                                     "missing", hint="restore the registry from a trusted copy")
            return Snapshot(0, "", "", empty_state())
        _version, blob = latest
        return open_snapshot(self.store.get_blob(blob), self.key.public_key(),
                             what=str(self.store.where),
                             min_version=max(floor, self.seen.read()),
                             now=now)

    def commit(self, change: Callable[[dict[str, Any], Any], None]) -> Snapshot:
        """Apply ``change(state, db)`` in one transaction and sign the next snapshot."""
        now = datetime.now(UTC)
        with self.store.transaction() as txn:
            db: Any = txn  # a SQLite connection, or a remote change (remote_store.py)
            current = self._read(db, now=now)
            state = copy.deepcopy(current.state)
            change(state, db)
            blob = self.store.put_blob(sign_snapshot(state, version=current.version + 1,
                                                     key=self.key, now=now))
            self.store.insert_snapshot(db, current.version + 1, blob,
                                       now.isoformat(timespec="seconds"))
        self.seen.advance(current.version + 1)
        return Snapshot(current.version + 1, "", "", state)

    def resolve(self, text: str, snap: Snapshot | None = None) -> Ref:
        """The version ``NAME@vN`` or ``NAME@STAGE`` names in the current state.

        Raises:
            UsageError: malformed, unknown name or version, or a stage not set.
        """
        name, ref = parse_ref(text)
        model = (snap or self.snapshot()).state["models"].get(name)
        if model is None:
            raise UsageError(f"no registered model {name!r}",
                             hint="list them with 'sealtune models list'")
        if ref.startswith("v"):
            if ref[1:] not in model["versions"]:
                raise UsageError(f"no version {text}", hint=f"see 'sealtune models show {name}'")
            return Ref(name, int(ref[1:]))
        if ref not in model["stages"]:
            raise UsageError(f"{name} has no version at stage {ref}",
                             hint=f"promote one: 'sealtune models promote {name}@vN --stage "
                                  f"{ref}'")
        return Ref(name, int(model["stages"][ref]))

    def record(self, ref: Ref, snap: Snapshot) -> dict[str, Any]:
        """The catalogue record of ``ref``, checked against the snapshot.

        Raises:
            IntegrityError: missing, or edited since it was signed into the snapshot.
        """
        entry = snap.state["models"][ref.name]["versions"][str(ref.version)]
        for name, version, text in self.store.versions():
            if (name, version) == (ref.name, ref.version):
                if digest_bytes(canonical(json.loads(text))) != entry["record"]:
                    break
                doc: dict[str, Any] = json.loads(text)
                return doc
        raise IntegrityError(f"{self.store.where}: the record of {ref} is missing or was "
                             "edited", hint="restore the registry from a trusted copy")
