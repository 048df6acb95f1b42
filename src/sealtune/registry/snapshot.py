"""The registry state as a signed snapshot with a version number and an expiry (TUF-style).

A snapshot (``sealtune.registry-snapshot/v1``) holds, for every model name,
its versions (each with the digest of its catalogue record, its signature's
digest and its model digest), its stage aliases, each stage's promotion
history (what rollback returns to) and its revocations. It is canonical JSON
signed with the registry key (ECDSA P-256, :mod:`sealtune.registry.signing`)
and stored as a blob; every change to the registry writes the next one.

A reader (the CLI, a running server) accepts a snapshot only when its
signature verifies, its version is not below the highest it has seen
(``registry/trust.json``, plus the server's memory: a replayed older
snapshot is a rollback attack) and it has not expired (a snapshot that is
never replaced is a freeze attack). ``sealtune models refresh`` re-signs the
current state with a new expiry.

What this protects against: an edited catalogue, a swapped alias, an
un-revoked version, a replayed older registry, a registry frozen in time.
What it does not: someone who rolls back ``trust.json`` together with the
catalogue fools a reader that starts afresh (a running server keeps the
highest version in memory); the clock is the host's.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from sealtune.errors import IntegrityError
from sealtune.outputs import write_atomic

if TYPE_CHECKING:
    from sealtune.registry.signing import SigningKey

FORMAT = "sealtune.registry-snapshot/v1"
DEFAULT_TTL = timedelta(days=7)
PAYLOAD_TYPE = b"application/vnd.sealtune.registry-snapshot+json"


def canonical(doc: Any) -> bytes:
    """Canonical JSON (sorted keys, no spaces, ASCII)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def empty_state() -> dict[str, Any]:
    """The registry state before anything was registered."""
    return {"models": {}}


def sign_snapshot(state: dict[str, Any], *, version: int, key: SigningKey,
                  now: datetime | None = None, ttl: timedelta = DEFAULT_TTL) -> bytes:
    """Sign ``state`` as snapshot ``version``, valid for ``ttl`` from ``now``."""
    issued = now or datetime.now(UTC)
    doc = {"format": FORMAT, "version": version,
           "issued": issued.isoformat(timespec="seconds"),
           "expires": (issued + ttl).isoformat(timespec="seconds"), "state": state}
    body = canonical(doc)
    sig = key.sign(PAYLOAD_TYPE + b"\n" + body, ec.ECDSA(hashes.SHA256()))
    return canonical({"snapshot": base64.b64encode(body).decode(),
                      "signature": base64.b64encode(sig).decode()})


@dataclass(frozen=True)
class Snapshot:
    """A verified snapshot."""

    version: int
    issued: str
    expires: str
    state: dict[str, Any]


def open_snapshot(blob: bytes, public: ec.EllipticCurvePublicKey, *, what: str,
                  min_version: int = 0, now: datetime | None = None) -> Snapshot:
    """Verify a signed snapshot: signature, not older than ``min_version``, not expired.

    Raises:
        IntegrityError: any check fails (the message says which, naming ``what``).
    """
    try:
        outer = json.loads(blob)
        body = base64.b64decode(outer["snapshot"], validate=True)
        sig = base64.b64decode(outer["signature"], validate=True)
        public.verify(sig, PAYLOAD_TYPE + b"\n" + body, ec.ECDSA(hashes.SHA256()))
        doc = json.loads(body)
        if doc["format"] != FORMAT or not isinstance(doc["version"], int):
            raise ValueError
        expires = datetime.fromisoformat(doc["expires"])
    except InvalidSignature:
        raise IntegrityError(f"{what}: the registry snapshot's signature does not verify",
                             hint="the registry was modified; restore it from a trusted "
                                  "copy") from None
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{what} is not a registry snapshot",
                             hint="restore the registry from a trusted copy") from None
    if doc["version"] < min_version:
        raise IntegrityError(f"{what}: registry snapshot {doc['version']} is older than "
                             f"snapshot {min_version} already seen (rollback)",
                             hint="an older copy of the registry was put back; restore the "
                                  "newest one")
    if (now or datetime.now(UTC)) >= expires:
        raise IntegrityError(f"{what}: registry snapshot {doc['version']} expired at "
                             f"{doc['expires']} (freeze)",
                             hint="run 'sealtune models refresh' to re-sign the registry "
                                  "state")
    return Snapshot(doc["version"], doc["issued"], doc["expires"], doc["state"])


class SeenVersion:
    """The highest snapshot version a reader of this workspace has accepted (``trust.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        """The highest version seen (0 when none)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return int(doc["version"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{self.path} is not a registry trust file",
                                 hint="restore it from a trusted copy") from None

    def advance(self, version: int) -> None:
        """Record ``version`` if it is higher than the one recorded."""
        if version > self.read():
            write_atomic(self.path, canonical({"version": version}) + b"\n")
