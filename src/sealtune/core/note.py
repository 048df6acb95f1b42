"""C2SP signed notes and transparency-log checkpoints (Ed25519 only).

Pure code: no I/O, no clock. Implements https://c2sp.org/signed-note and
https://c2sp.org/tlog-checkpoint, byte-compatible with Go's
``golang.org/x/mod/sumdb/note`` (key strings ``<name>+<hex key id>+<base64(0x01
|| public key)>``, key id ``SHA-256(name || "\\n" || 0x01 || public key)[:4]``,
signature lines ``— <name> <base64(key id || signature)>``), so checkpoints
signed here can be checked by Go witnesses and verifiers and vice versa.

Parsing is strict and fails closed: notes must be valid UTF-8 without control
characters other than newline, end with a newline, carry at most 100
signatures, use canonical base64 and well-formed key names; a signature by a
known key that does not verify rejects the whole note; signatures by unknown
keys are kept apart as unverified and never count.

What this protects against: edited note text or checkpoint fields, forged or
swapped signatures, confusion between keys that share a name or a key id.

What it does not: whether the signer should have signed (a stolen signing key
signs anything), whether two notes from the same key are consistent with each
other (that is a Merkle consistency check, see :mod:`sealtune.core.hashchain`),
and revocation or rotation of keys (the caller picks which verifiers to trust).
Only Ed25519 (signature type 0x01) is supported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealtune.errors import ConfigError, IntegrityError, UsageError

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100
_SIG_PREFIX = "\u2014 "  # em dash, space
_HEX8 = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MALFORMED = "malformed note"


def _b64decode(text: str) -> bytes:
    """Decode standard base64, refusing anything but its canonical form."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def is_valid_key_name(name: str) -> bool:
    """Return whether ``name`` is a valid note key name.

    Non-empty, no Unicode spaces, no ``+``, no control characters.
    """
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in name)
    )


def key_id(name: str, typed_public_key: bytes) -> int:
    """Return the note key id ``SHA-256(name || 0x0A || typed key)[:4]`` as uint32.

    Args:
        name: the key name.
        typed_public_key: signature type byte followed by the public key.
    """
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + typed_public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _check_text(text: str) -> None:
    """Raise IntegrityError unless ``text`` is valid signed-note content."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise IntegrityError(_MALFORMED) from None
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise IntegrityError(_MALFORMED)


@dataclass(frozen=True)
class Signature:
    """One signature line of a note.

    Attributes:
        name: the key name on the line.
        key_id: the uint32 key id from the first four signature bytes.
        base64: the base64 text of ``key id || signature`` as it appeared.
    """

    name: str
    key_id: int
    base64: str


@dataclass(frozen=True)
class Note:
    """A note whose signatures were checked.

    Attributes:
        text: the signed text, including its final newline.
        signatures: signatures by trusted keys, all verified.
        unverified: signatures by keys the caller did not trust (ignored).
    """

    text: str
    signatures: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


class NoteVerifier:
    """An Ed25519 note verifier: a key name, its key id and public key.

    Args:
        name: the key name.
        public_key: the Ed25519 public key.

    Raises:
        UsageError: ``name`` is not a valid key name.
    """

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not is_valid_key_name(name):
            raise UsageError("note key name must be non-empty, without spaces or '+'")
        self._name = name
        self._public_key = public_key
        self._raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = key_id(name, bytes([ALG_ED25519]) + self._raw)

    @classmethod
    def from_key_string(cls, key: str) -> NoteVerifier:
        """Parse a ``<name>+<hex key id>+<base64(0x01 || public key)>`` string.

        Raises:
            ConfigError: the string is malformed, not Ed25519, or its key id
                does not match its name and key.
        """
        hint = "use the verifier key printed by the ledger's signer (name+keyid+key)"
        parts = key.split("+", 2)
        if len(parts) != 3 or not is_valid_key_name(parts[0]) or not _HEX8.fullmatch(parts[1]):
            raise ConfigError("note verifier key is malformed", hint=hint)
        name, hex_id, key64 = parts
        try:
            typed = _b64decode(key64)
        except ValueError:
            raise ConfigError("note verifier key is malformed", hint=hint) from None
        if len(typed) != 33 or typed[0] != ALG_ED25519:
            raise ConfigError("note verifier key is not an Ed25519 key", hint=hint)
        if key_id(name, typed) != int(hex_id, 16):
            raise ConfigError("note verifier key id does not match its key", hint=hint)
        try:
            public = Ed25519PublicKey.from_public_bytes(typed[1:])
        except ValueError:
            raise ConfigError("note verifier key is not a valid Ed25519 key", hint=hint) from None
        return cls(name, public)

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> int:
        """The uint32 key id."""
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The Ed25519 public key."""
        return self._public_key

    @property
    def key_string(self) -> str:
        """The ``<name>+<hex key id>+<base64(0x01 || key)>`` verifier key string."""
        return f"{self._name}+{self._key_id:08x}+{_b64encode(bytes([ALG_ED25519]) + self._raw)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` (without the key id) signs ``message``."""
        if len(signature) != 64:
            return False
        try:
            self._public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier({self.key_string!r})"


class NoteSigner:
    """Signs notes with an Ed25519 private key under a key name.

    Args:
        private_key: the Ed25519 signing key (held by the caller's keyring).
        name: the key name written on signature lines.

    Raises:
        UsageError: ``name`` is not a valid key name.
    """

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        self._private_key = private_key
        self._verifier = NoteVerifier(name, private_key.public_key())

    @property
    def name(self) -> str:
        """The key name."""
        return self._verifier.name

    @property
    def key_id(self) -> int:
        """The uint32 key id."""
        return self._verifier.key_id

    @property
    def verifier_key(self) -> str:
        """The verifier key string to give to whoever checks the notes."""
        return self._verifier.key_string

    def verifier(self) -> NoteVerifier:
        """Return the matching :class:`NoteVerifier`."""
        return self._verifier

    def sign(self, text: str) -> str:
        """Sign ``text`` and return the complete signed note.

        Args:
            text: non-empty note text ending in a newline, without control
                characters other than newline.

        Raises:
            IntegrityError: ``text`` is not valid note text (``malformed note``).
        """
        if not text.endswith("\n"):
            raise IntegrityError(_MALFORMED)
        _check_text(text)
        sig = self._private_key.sign(text.encode("utf-8"))
        blob = _b64encode(self.key_id.to_bytes(4, "big") + sig)
        return f"{text}\n{_SIG_PREFIX}{self.name} {blob}\n"

    def __repr__(self) -> str:
        return f"NoteSigner({self.verifier_key!r})"


def parse_note(note: str | bytes) -> tuple[str, tuple[Signature, ...]]:
    """Split a signed note into its text and signature lines, checking syntax only.

    Nothing is verified: never act on the text returned here; use
    :func:`open_note`.

    Raises:
        IntegrityError: the note is malformed.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(_MALFORMED) from None
    _check_text(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise IntegrityError(_MALFORMED)
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise IntegrityError(_MALFORMED)
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise IntegrityError(_MALFORMED)
    sigs = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise IntegrityError(_MALFORMED)
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not is_valid_key_name(name):
            raise IntegrityError(_MALFORMED)
        try:
            raw = _b64decode(b64)
        except ValueError:
            raise IntegrityError(_MALFORMED) from None
        if len(raw) < 5:
            raise IntegrityError(_MALFORMED)
        sigs.append(Signature(name, int.from_bytes(raw[:4], "big"), b64))
    return text, tuple(sigs)


def open_note(note: str | bytes, verifiers: NoteVerifier | Iterable[NoteVerifier]) -> Note:
    """Parse a signed note and verify it against trusted verifiers.

    Signatures by unknown keys are ignored (returned as ``unverified``); a
    signature by a trusted key that fails rejects the note.

    Args:
        note: the signed note.
        verifiers: the trusted key(s).

    Returns:
        The note, with at least one verified signature.

    Raises:
        IntegrityError: malformed note, a bad signature by a trusted key, two
            trusted verifiers sharing a name and key id, or no signature by a
            trusted key.
    """
    known = [verifiers] if isinstance(verifiers, NoteVerifier) else list(verifiers)
    text, sigs = parse_note(note)
    message = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[Signature] = set()
    for sig in sigs:
        if sig in seen:
            continue
        seen.add(sig)
        matches = [v for v in known if v.name == sig.name and v.key_id == sig.key_id]
        if not matches:
            unverified.append(sig)
            continue
        if len(matches) > 1:
            raise IntegrityError(f"ambiguous key {sig.name}+{sig.key_id:08x}")
        if not matches[0].verify(message, _b64decode(sig.base64)[4:]):
            raise IntegrityError(f"invalid signature for key {sig.name}+{sig.key_id:08x}")
        if all(v.name != sig.name or v.key_id != sig.key_id for v in verified):
            verified.append(sig)
    if not verified:
        raise IntegrityError("note has no verifiable signatures")
    return Note(text, tuple(verified), tuple(unverified))


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, root hash, extension lines.

    Attributes:
        origin: the log's identity (first line).
        size: number of leaves.
        root: the 32-byte RFC 6962 root hash.
        extensions: the optional extra lines, in order, without newlines.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> str:
        """Return the note text of this checkpoint.

        Raises:
            UsageError: a field cannot be encoded as a checkpoint line.
        """
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        if self.size < 0 or len(self.root) != 32 or any(not ln or "\n" in ln for ln in lines):
            raise UsageError("checkpoint fields must be non-empty single lines")
        text = "\n".join(lines) + "\n"
        try:
            _check_text(text)
        except IntegrityError:
            raise UsageError("checkpoint fields must not contain control characters") from None
        return text


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text (the signed text, not the whole note) strictly.

    Raises:
        IntegrityError: the text is not a well-formed checkpoint.
    """
    bad = IntegrityError("malformed checkpoint")
    try:
        _check_text(text)
    except IntegrityError:
        raise bad from None
    if not text.endswith("\n"):
        raise bad
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise bad
    origin, size_text, root64, *extensions = lines
    if not _DECIMAL.fullmatch(size_text) or len(size_text) > 20:
        raise bad
    size = int(size_text)
    try:
        root = _b64decode(root64)
    except ValueError:
        raise bad from None
    if len(root) != 32 or size >= 1 << 64:
        raise bad
    return Checkpoint(origin, size, root, tuple(extensions))


def open_checkpoint(
    note: str | bytes, verifiers: NoteVerifier | Iterable[NoteVerifier]
) -> Checkpoint:
    """Verify a signed checkpoint note and parse its body.

    Raises:
        IntegrityError: bad signature or malformed checkpoint.
    """
    return parse_checkpoint(open_note(note, verifiers).text)
