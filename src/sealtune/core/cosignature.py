"""C2SP tlog-cosignature v1 (Ed25519): witness cosignatures on checkpoints.

Pure code: no I/O, no clock (callers pass the timestamp). Implements the
Ed25519 type of https://c2sp.org/tlog-cosignature, byte-compatible with Go's
``filippo.io/torchwood`` and ``transparency-dev/formats`` cosigners:

* key id = ``SHA-256(name || "\\n" || 0x04 || public key)[:4]``;
* signed message = ``"cosignature/v1\\n" || "time <T>\\n" || checkpoint text``
  (the note text up to and including its final newline, no signature lines);
* signature line = ``— <name> base64(key id || uint64_be(T) || Ed25519 signature)``;
* verifier key string (vkey) = ``<name>+<hex key id>+base64(0x04 || public key)``.

What this protects against: a cosignature moved to another checkpoint, another
time or another witness key (all are in the signed message or the key id); a
log key accepted as a witness key or the reverse (the type byte 0x04 differs
from a note key's 0x01, so the key ids differ); malformed or oversized lines.

What it does not: a cosignature says the witness saw this checkpoint as the
largest consistent one at time ``T``; it does not say the log's entries are
true, and a stolen witness key cosigns anything. Whether enough independent
witnesses cosigned is the caller's policy (k of n). The Ed25519 type does not
commit to the witness name, so one key must never serve two witness names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealtune.core.note import is_valid_key_name, parse_checkpoint
from sealtune.errors import ConfigError, IntegrityError, UsageError

ALG_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = (1 << 63) - 1
MAX_LINES = 100
_HEADER = "cosignature/v1\n"
_SIG_PREFIX = "\u2014 "  # em dash, space
_HEX8 = re.compile(r"[0-9a-f]{8}")
_BLOB_LEN = 4 + 8 + 64


def _b64decode(text: str) -> bytes:
    """Decode standard base64, refusing anything but its canonical form."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def cosignature_key_id(name: str, public_key: bytes) -> int:
    """Return ``SHA-256(name || 0x0A || 0x04 || public key)[:4]`` as a uint32."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


def signed_message(text: str, timestamp: int) -> bytes:
    """Return the message a v1 cosignature signs over checkpoint ``text`` at ``timestamp``.

    Raises:
        UsageError: the timestamp is negative or above 2^63 - 1.
    """
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise UsageError("cosignature timestamps must be between 0 and 2^63 - 1")
    return f"{_HEADER}time {timestamp}\n{text}".encode()


@dataclass(frozen=True)
class CosignatureLine:
    """One parsed signature line (syntax only; nothing verified).

    Attributes:
        name: the key name on the line.
        key_id: the uint32 key id (first four blob bytes).
        blob: the decoded ``key id || payload`` bytes.
        line: the line as it appeared, without its newline.
    """

    name: str
    key_id: int
    blob: bytes
    line: str


@dataclass(frozen=True)
class Cosignature:
    """A cosignature that verified.

    Attributes:
        name: the witness name.
        key_id: its key id.
        timestamp: the POSIX time the witness signed at.
        line: the signature line, without its newline.
    """

    name: str
    key_id: int
    timestamp: int
    line: str


class CosignatureVerifier:
    """An Ed25519 cosignature v1 verifier: a witness name and public key.

    Args:
        name: the witness name (a note key name).
        public_key: the witness's Ed25519 public key.

    Raises:
        UsageError: ``name`` is not a valid key name.
    """

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not is_valid_key_name(name):
            raise UsageError("witness name must be non-empty, without spaces or '+'")
        self._name = name
        self._public_key = public_key
        self._raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = cosignature_key_id(name, self._raw)

    @classmethod
    def from_key_string(cls, key: str) -> CosignatureVerifier:
        """Parse a ``<name>+<hex key id>+<base64(0x04 || public key)>`` vkey.

        Raises:
            ConfigError: malformed, not a cosignature v1 key, or a key id that
                does not match the name and key.
        """
        hint = "use the verifier key printed by 'sealtune witness init' (name+keyid+key)"
        parts = key.split("+", 2) if isinstance(key, str) else []
        if len(parts) != 3 or not is_valid_key_name(parts[0]) or not _HEX8.fullmatch(parts[1]):
            raise ConfigError("witness verifier key is malformed", hint=hint)
        name, hex_id, key64 = parts
        try:
            typed = _b64decode(key64)
        except ValueError:
            raise ConfigError("witness verifier key is malformed", hint=hint) from None
        if len(typed) != 33 or typed[0] != ALG_COSIGNATURE_V1:
            raise ConfigError("witness verifier key is not an Ed25519 cosignature (0x04) key",
                              hint=hint)
        if cosignature_key_id(name, typed[1:]) != int(hex_id, 16):
            raise ConfigError("witness verifier key id does not match its key", hint=hint)
        try:
            public = Ed25519PublicKey.from_public_bytes(typed[1:])
        except ValueError:
            raise ConfigError("witness verifier key is not a valid Ed25519 key",
                              hint=hint) from None
        return cls(name, public)

    @property
    def name(self) -> str:
        """The witness name."""
        return self._name

    @property
    def key_id(self) -> int:
        """The uint32 key id."""
        return self._key_id

    @property
    def key_string(self) -> str:
        """The vkey string ``<name>+<hex key id>+<base64(0x04 || key)>``."""
        typed = bytes([ALG_COSIGNATURE_V1]) + self._raw
        return f"{self._name}+{self._key_id:08x}+{base64.b64encode(typed).decode('ascii')}"

    def matches(self, line: CosignatureLine) -> bool:
        """Whether ``line`` claims to be by this key (name and key id)."""
        return line.name == self._name and line.key_id == self._key_id

    def verify(self, text: str, line: CosignatureLine) -> Cosignature | None:
        """Return the cosignature if ``line`` is this key's valid cosignature of ``text``."""
        if not self.matches(line) or len(line.blob) != _BLOB_LEN:
            return None
        timestamp = int.from_bytes(line.blob[4:12], "big")
        if timestamp > MAX_TIMESTAMP:
            return None
        try:
            self._public_key.verify(line.blob[12:], signed_message(text, timestamp))
        except InvalidSignature:
            return None
        return Cosignature(self._name, self._key_id, timestamp, line.line)

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.key_string!r})"


class CosignatureSigner:
    """Signs v1 cosignatures with a witness's Ed25519 key.

    Args:
        private_key: the witness signing key.
        name: the witness name written on signature lines.

    Raises:
        UsageError: ``name`` is not a valid key name.
    """

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        self._private_key = private_key
        self._verifier = CosignatureVerifier(name, private_key.public_key())

    @property
    def name(self) -> str:
        """The witness name."""
        return self._verifier.name

    @property
    def verifier_key(self) -> str:
        """The vkey string to give to whoever checks the cosignatures."""
        return self._verifier.key_string

    def verifier(self) -> CosignatureVerifier:
        """Return the matching verifier."""
        return self._verifier

    def cosign(self, text: str, timestamp: int) -> str:
        """Cosign checkpoint ``text`` at ``timestamp``; return the line with its newline.

        Raises:
            IntegrityError: ``text`` is not a well-formed checkpoint.
            UsageError: the timestamp is out of range.
        """
        parse_checkpoint(text)
        sig = self._private_key.sign(signed_message(text, timestamp))
        blob = self._verifier.key_id.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + sig
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode('ascii')}\n"


def parse_signature_line(line: str) -> CosignatureLine:
    """Parse one ``— <name> <base64>`` line (without newline), syntax only.

    Raises:
        IntegrityError: the line is malformed.
    """
    bad = IntegrityError("malformed signature line")
    if not line.startswith(_SIG_PREFIX) or "\n" in line:
        raise bad
    name, sep, b64 = line[len(_SIG_PREFIX):].partition(" ")
    if not sep or not is_valid_key_name(name):
        raise bad
    try:
        blob = _b64decode(b64)
    except ValueError:
        raise bad from None
    if len(blob) < 5:
        raise bad
    return CosignatureLine(name, int.from_bytes(blob[:4], "big"), blob, line)


def parse_signature_lines(block: str) -> list[CosignatureLine]:
    """Parse a block of newline-terminated signature lines (a witness's 200 response).

    Raises:
        IntegrityError: empty, too many lines, or a malformed line.
    """
    if not block.endswith("\n"):
        raise IntegrityError("malformed signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_LINES:
        raise IntegrityError("too many signature lines")
    return [parse_signature_line(line) for line in lines]


@dataclass(frozen=True)
class CosignatureCheck:
    """The outcome of checking cosignature lines against trusted witness keys.

    Attributes:
        valid: verified cosignatures, at most one per witness key.
        invalid: names of trusted witnesses whose line did not verify (forged or edited).
        unknown: lines by keys the caller does not trust (ignored).
    """

    valid: tuple[Cosignature, ...]
    invalid: tuple[str, ...]
    unknown: int


def check_cosignatures(
    text: str, lines: Iterable[CosignatureLine], verifiers: Iterable[CosignatureVerifier]
) -> CosignatureCheck:
    """Verify cosignature lines over checkpoint ``text`` against trusted witness keys.

    A line by a trusted key that fails verification is reported in ``invalid``
    and never counted; lines by unknown keys are ignored.
    """
    keys = list(verifiers)
    valid: dict[tuple[str, int], Cosignature] = {}
    invalid: list[str] = []
    unknown = 0
    for line in lines:
        match = next((v for v in keys if v.matches(line)), None)
        if match is None:
            unknown += 1
            continue
        cosig = match.verify(text, line)
        if cosig is None:
            invalid.append(line.name)
        else:
            valid.setdefault((cosig.name, cosig.key_id), cosig)
    return CosignatureCheck(tuple(valid.values()), tuple(invalid), unknown)
