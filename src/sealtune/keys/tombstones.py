"""Tombstones of destroyed and retired local keys, outside the keyring file.

The ``local`` backend keeps its KEKs in ``keyring.sealed``. Destroying a key
(or retiring old versions) deletes them from that file, but a backup or
snapshot of the file made earlier still holds them: restoring it would bring
the key back. So every retire and destroy first appends a line to
``<workspace>/key-tombstones.jsonl`` naming the key (its name and creation
time, never material) and what was removed; the local keyring applies these
tombstones whenever it reads a key, and refuses a key (or version) a
tombstone buries even when the keyring file holds it again.

What this protects against: a destroyed or retired local key resurrected by
restoring an older ``keyring.sealed`` alone (from a backup, a snapshot, a
copy). What it does not: whoever restores (or edits) *both* files together,
or the whole workspace directory, gets the key back: a file on the same disk
cannot make a key unrecoverable. The audit ledger still records the
``key.destroy`` (a rollback of the ledger is caught only against a
checkpoint published elsewhere). Only a backend that holds the key outside
the host (``pkcs11``, ``openbao``) can truly shred it; see
``docs/threat-model.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["TOMBSTONES", "Tombstone", "bury", "read_tombstones"]

TOMBSTONES = "key-tombstones.jsonl"


@dataclass(frozen=True)
class Tombstone:
    """What was removed of one key (identified by name and creation time).

    Attributes:
        destroyed: every version is gone.
        below: versions lower than this are gone (0: none retired).
    """

    destroyed: bool = False
    below: int = 0

    def merge(self, other: Tombstone) -> Tombstone:
        return Tombstone(self.destroyed or other.destroyed, max(self.below, other.below))


def _key(name: str, created: str) -> str:
    return f"{name}\0{created}"


def bury(path: Path, *, name: str, created: str, destroyed: bool = False,
         below: int = 0) -> None:
    """Append (and fsync) a tombstone for key ``name`` created at ``created``."""
    line = json.dumps({"name": name, "created": created, "destroyed": destroyed,
                       "below": below, "at": datetime.now(UTC).isoformat(timespec="seconds")})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_tombstones(path: Path) -> dict[str, Tombstone]:
    """Tombstones by key (``name`` NUL ``created``); a torn or foreign line is skipped."""
    found: dict[str, Tombstone] = {}
    try:
        with path.open("r", encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec: Any = json.loads(line)
                    key = _key(str(rec["name"]), str(rec["created"]))
                    stone = Tombstone(bool(rec.get("destroyed")), int(rec.get("below", 0)))
                except (ValueError, KeyError, TypeError):
                    continue
                found[key] = found.get(key, Tombstone()).merge(stone)
    except FileNotFoundError:
        pass
    return found


def stone_for(path: Path | None, name: str, created: str) -> Tombstone:
    """The tombstone of one key (an empty one when there is none, or no file)."""
    if path is None:
        return Tombstone()
    return read_tombstones(path).get(_key(name, created), Tombstone())
