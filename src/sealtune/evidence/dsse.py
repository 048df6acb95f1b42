"""DSSE v1 envelopes (Dead Simple Signing Envelope) with Ed25519.

An envelope is the canonical JSON object ``{"payload": base64(body),
"payloadType": type, "signatures": [{"keyid": id, "sig": base64(sig)}]}``;
each signature is Ed25519 over the pre-authentication encoding (PAE)::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with ``LEN`` the ASCII decimal byte length (https://github.com/secure-systems-lab/dsse,
protocol v1). The key id is ``sha256:`` followed by the lower-case hex
SHA-256 of the public key's DER SubjectPublicKeyInfo (:func:`keyid`), so a
pinned key and the id on a signature can be compared without trusting the
envelope. Statements use payload type ``application/vnd.in-toto+json``; the
in-toto and securesystemslib packages read and verify these envelopes.

Parsing is strict and linear: canonical JSON (sorted keys, no spaces),
exactly these fields, standard canonical base64, at most
:data:`MAX_SIGNATURES` signatures, payloads up to :data:`MAX_PAYLOAD` bytes.
:func:`open_envelope` returns the payload only when a signature by a pinned
key verifies, and refuses the envelope outright when a signature that
claims a pinned key's id does not verify; signatures by other keys are
ignored.

What this protects against: an edited payload or payload type (the PAE binds
both, with lengths, so neither can be shifted into the other), a signature
moved from another envelope, a forged signature, a second encoding of the
same envelope. What it does not: decide which keys to trust (the caller
pins them), revoke keys, or say anything about whether what the payload
claims is true.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealtune.errors import IntegrityError
from sealtune.evidence import _json

PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_SIGNATURES = 16
MAX_PAYLOAD = 16 << 20
_KEYS = {"payload", "payloadType", "signatures"}


def keyid(public_key: Ed25519PublicKey) -> str:
    """``sha256:<hex SHA-256 of the DER SubjectPublicKeyInfo>`` of ``public_key``."""
    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``payload_type`` and ``payload``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    """One envelope signature: the key id it claims and the raw signature bytes."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A parsed (not yet verified) envelope."""

    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        """The canonical JSON bytes of the envelope."""
        return _json.canonical({
            "payload": _b64(self.payload), "payloadType": self.payload_type,
            "signatures": [{"keyid": s.keyid, "sig": _b64(s.sig)} for s in self.signatures]})


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise IntegrityError(f"{what}: not a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"{what}: invalid base64") from None
    if _b64(raw) != text:
        raise IntegrityError(f"{what}: non-canonical base64")
    return raw


def sign(payload: bytes, *, payload_type: str = PAYLOAD_TYPE,
         signer: Callable[[bytes], bytes], signer_keyid: str) -> bytes:
    """Sign ``payload`` into a one-signature envelope; returns its canonical JSON bytes.

    Args:
        payload: the body (for statements, their canonical JSON).
        payload_type: the media type of the body.
        signer: returns the Ed25519 signature of the bytes it is given.
        signer_keyid: the :func:`keyid` of the signing key.
    """
    sig = signer(pae(payload_type, payload))
    return Envelope(payload, payload_type, (Signature(signer_keyid, sig),)).to_json()


def parse(data: bytes, *, what: str) -> Envelope:
    """Parse an envelope strictly (see the module docstring); checks no signature.

    Raises:
        IntegrityError: not a canonical, well-formed DSSE envelope.
    """
    if len(data) > 2 * MAX_PAYLOAD:
        raise IntegrityError(f"{what}: envelope too large")
    doc = _json.loads_canonical(data, what=what)
    if not isinstance(doc, dict) or set(doc) != _KEYS:
        raise IntegrityError(f"{what}: not a DSSE envelope (payload, payloadType, signatures)")
    kind, sigs = doc["payloadType"], doc["signatures"]
    if not isinstance(kind, str) or not kind:
        raise IntegrityError(f"{what}: payloadType must be a non-empty string")
    if not isinstance(sigs, list) or not 1 <= len(sigs) <= MAX_SIGNATURES:
        raise IntegrityError(f"{what}: 1 to {MAX_SIGNATURES} signatures expected")
    parsed = []
    for n, item in enumerate(sigs):
        if (not isinstance(item, dict) or set(item) != {"keyid", "sig"}
                or not isinstance(item["keyid"], str)):
            raise IntegrityError(f"{what}: signature {n} must hold exactly keyid and sig")
        parsed.append(Signature(item["keyid"], _unb64(item["sig"], f"{what}: signature {n}")))
    payload = _unb64(doc["payload"], f"{what}: payload")
    if len(payload) > MAX_PAYLOAD:
        raise IntegrityError(f"{what}: payload too large")
    return Envelope(payload, kind, tuple(parsed))


def open_envelope(data: bytes, keys: Iterable[Ed25519PublicKey], *, what: str,
                  payload_type: str = PAYLOAD_TYPE) -> tuple[bytes, str]:
    """Verify an envelope against pinned keys and return ``(payload, keyid that signed)``.

    Args:
        data: the envelope's bytes.
        keys: the pinned public keys; at least one must have signed.
        what: the file name, for messages.
        payload_type: the payload type required.

    Raises:
        IntegrityError: malformed, another payload type, no valid signature by
            a pinned key, or a failing signature that claims a pinned key.
    """
    env = parse(data, what=what)
    if env.payload_type != payload_type:
        raise IntegrityError(f"{what}: payload type is not {payload_type}")
    pinned = {keyid(k): k for k in keys}
    message = pae(env.payload_type, env.payload)
    good = None
    for sig in env.signatures:
        key = pinned.get(sig.keyid)
        if key is None:
            continue
        try:
            key.verify(sig.sig, message)
        except InvalidSignature:
            raise IntegrityError(f"{what}: a signature by pinned key {sig.keyid} does not "
                                 "verify") from None
        good = good or sig.keyid
    if good is None:
        raise IntegrityError(f"{what}: not signed by a pinned key",
                             hint="pin the workspace's evidence key (sealtune bundle keys)")
    return env.payload, good
