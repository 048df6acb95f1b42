"""Pinned keys: what a verifier trusts, and the pin file ``sealtune bundle keys`` writes.

A pin is one of:

* a pin file (``sealtune.bundle-keys/v1`` JSON: the evidence public key as PEM
  and its key id, the ledger verifier key string, and, when the workspace has
  a witness policy, ``witnesses``: its ``k`` and witness keys), pinning all of them;
* a PEM Ed25519 public key file (``SubjectPublicKeyInfo``): an evidence key;
* ``sha256:<64 hex>``: an evidence key id; the bundle's own
  ``keys/evidence.pub`` is then trusted only if it has exactly that id;
* for the ledger, a verifier key string ``<name>+<hex id>+<base64 key>`` (as
  ``sealtune audit key`` prints);
* for witnesses, cosignature verifier keys (as ``sealtune witness init``
  prints) and how many of them must have cosigned (``k``; given by hand, it
  defaults to all of them, the strictest).

What this protects against: trusting a key because the bundle carries it
(keys in the bundle count only when they match a pin), a malformed pin read
as something else (each form is parsed strictly; anything else is refused).
What it does not: tell you which keys to pin; get them out of band
(``sealtune bundle keys`` on the workspace, or from its owner).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from sealtune.config import WitnessPolicyConfig
from sealtune.core.cosignature import CosignatureVerifier
from sealtune.core.note import NoteVerifier
from sealtune.errors import ConfigError, SealtuneError, UsageError
from sealtune.evidence import _json
from sealtune.evidence.dsse import keyid

PIN_FORMAT = "sealtune.bundle-keys/v1"
_KEYID = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_PIN = 64 * 1024


@dataclass
class Pins:
    """The keys a verifier trusts.

    Attributes:
        evidence: pinned evidence public keys.
        evidence_ids: pinned evidence key ids (``sha256:<hex>``).
        ledger: pinned ledger verifier keys.
        witnesses: pinned witness (cosignature) keys.
        witnesses_k: how many of them must have cosigned (None: all of them).
    """

    evidence: list[Ed25519PublicKey] = field(default_factory=list)
    evidence_ids: list[str] = field(default_factory=list)
    ledger: list[NoteVerifier] = field(default_factory=list)
    witnesses: list[CosignatureVerifier] = field(default_factory=list)
    witnesses_k: int | None = None

    def witness_policy(self) -> tuple[list[CosignatureVerifier], int] | None:
        """The pinned witnesses and ``k``, or None when no witness is pinned."""
        if not self.witnesses:
            return None
        return list(self.witnesses), self.witnesses_k or len(self.witnesses)

    def add_witness(self, verifier: CosignatureVerifier) -> None:
        """Pin one more witness key (a key pinned twice counts once)."""
        if all(v.key_string != verifier.key_string for v in self.witnesses):
            self.witnesses.append(verifier)


def public_pem(key: Ed25519PublicKey) -> str:
    """The PEM ``SubjectPublicKeyInfo`` of ``key``."""
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public_pem(data: bytes, *, what: str) -> Ed25519PublicKey:
    """Parse a PEM Ed25519 public key.

    Raises:
        ConfigError: not a PEM Ed25519 public key.
    """
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{what}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{what}: not an Ed25519 public key")
    return key


def pin_file(evidence: Ed25519PublicKey, ledger_key: str, *, workspace_id: str,
             witnesses: WitnessPolicyConfig | None = None) -> bytes:
    """The pin file for a workspace's keys (canonical JSON, newline).

    Args:
        evidence: the evidence public key.
        ledger_key: the ledger verifier key string.
        workspace_id: the workspace's id (informative).
        witnesses: the workspace's witness policy: its ``k`` and keys are pinned too.
    """
    doc: dict[str, object] = {
        "format": PIN_FORMAT, "workspace_id": workspace_id,
        "evidence": {"keyid": keyid(evidence), "public_key": public_pem(evidence)},
        "ledger": ledger_key}
    if witnesses is not None:
        doc["witnesses"] = {"k": witnesses.k, "keys": list(witnesses.keys)}
    return _json.canonical(doc) + b"\n"


def _witnesses_from(doc: object, pins: Pins, *, what: str) -> None:
    """Add a pin file's ``witnesses`` (``{"k", "keys"}``) to ``pins``."""
    if (not isinstance(doc, dict) or set(doc) != {"k", "keys"} or type(doc["k"]) is not int
            or not isinstance(doc["keys"], list) or not 1 <= doc["k"] <= len(doc["keys"])
            or not all(isinstance(k, str) for k in doc["keys"])):
        raise ConfigError(f"{what}: witnesses must be {{k, keys}} with 1 <= k <= len(keys)")
    for key in doc["keys"]:
        pins.add_witness(CosignatureVerifier.from_key_string(key))
    pins.witnesses_k = max(pins.witnesses_k or 0, doc["k"])


def _from_pin_file(data: bytes, pins: Pins, *, what: str) -> None:
    doc = _json.loads(data.rstrip(b"\n"), what=what)
    base = {"format", "workspace_id", "evidence", "ledger"}
    if (not isinstance(doc, dict) or doc.get("format") != PIN_FORMAT
            or set(doc) not in (base, base | {"witnesses"})
            or not isinstance(doc["evidence"], dict)
            or set(doc["evidence"]) != {"keyid", "public_key"}
            or not isinstance(doc["evidence"]["public_key"], str)
            or not isinstance(doc["ledger"], str)):
        raise ConfigError(f"{what}: not a {PIN_FORMAT} pin file",
                          hint="write one with 'sealtune bundle keys --out FILE'")
    key = load_public_pem(doc["evidence"]["public_key"].encode("ascii", "replace"), what=what)
    if keyid(key) != doc["evidence"]["keyid"]:
        raise ConfigError(f"{what}: the evidence key id does not match its key")
    pins.evidence.append(key)
    pins.ledger.append(NoteVerifier.from_key_string(doc["ledger"]))
    if "witnesses" in doc:
        _witnesses_from(doc["witnesses"], pins, what=what)


def add_evidence_pin(pins: Pins, value: str) -> None:
    """Add ``value`` (a key id, a PEM file or a pin file; see the module docstring) to ``pins``.

    Raises:
        UsageError: the file cannot be read.
        ConfigError: it is none of the accepted forms.
    """
    if _KEYID.fullmatch(value):
        pins.evidence_ids.append(value)
        return
    path = Path(value)
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_PIN + 1)
    except OSError:
        raise UsageError(f"--key {value}: not a key id (sha256:<hex>) or a readable file",
                         hint="pass the file 'sealtune bundle keys --out FILE' wrote") from None
    if len(data) > _MAX_PIN:
        raise ConfigError(f"{path}: too large for a key file")
    if data.lstrip().startswith(b"-----BEGIN"):
        pins.evidence.append(load_public_pem(data, what=str(path)))
        return
    try:
        _from_pin_file(data, pins, what=str(path))
    except SealtuneError as exc:
        raise ConfigError(f"{path}: not a PEM public key or a pin file ({exc.message})",
                          hint="write one with 'sealtune bundle keys --out FILE'") from None


def add_ledger_pin(pins: Pins, value: str) -> None:
    """Add a ledger verifier key string to ``pins``.

    Raises:
        ConfigError: malformed.
    """
    pins.ledger.append(NoteVerifier.from_key_string(value.strip()))


def load_pins(keys: list[str], ledger_keys: list[str] | None = None, *,
              witness_keys: list[str] | None = None, witnesses_k: int | None = None) -> Pins:
    """Pins from ``--key``, ``--ledger-key``, ``--witness-key`` and ``--witnesses-k`` values.

    ``witnesses_k`` overrides the ``k`` of any pin file; witness keys given by
    hand without it must all have cosigned (unless a pin file gives ``k``).

    Raises:
        UsageError: no evidence key pinned, an unreadable file, or a ``k`` that is
            not between 1 and the number of pinned witness keys.
        ConfigError: a malformed pin.
    """
    if not keys:
        raise UsageError("pin the evidence key with --key",
                         hint="get it from the workspace with 'sealtune bundle keys'")
    pins = Pins()
    for value in keys:
        add_evidence_pin(pins, value)
    for value in ledger_keys or []:
        add_ledger_pin(pins, value)
    for value in witness_keys or []:
        pins.add_witness(CosignatureVerifier.from_key_string(value.strip()))
    if witnesses_k is not None:
        pins.witnesses_k = witnesses_k
    if pins.witnesses_k is not None and not 1 <= pins.witnesses_k <= len(pins.witnesses):
        raise UsageError(f"--witnesses-k {pins.witnesses_k}: {len(pins.witnesses)} witness "
                         "keys are pinned", hint="pin at least k witness keys with "
                         "--witness-key (or a pin file), with k >= 1")
    return pins

