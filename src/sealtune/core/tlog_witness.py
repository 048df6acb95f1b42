"""The C2SP tlog-witness wire format: ``add-checkpoint`` requests and 409 bodies.

Pure code: no I/O. Implements the message formats of
https://c2sp.org/tlog-witness: the request body is an old size line
``old <N>``, zero to 63 consistency proof lines (one base64 hash each), an
empty line, then the signed checkpoint note; a 409 answer carries the size the
witness holds as ``<N>\\n`` with content type ``text/x.tlog.size``.

Parsing is strict, linear in the input and bounded: at most
:data:`MAX_REQUEST_BYTES` bytes, canonical decimal and base64, 32-byte hashes,
at most :data:`MAX_PROOF_LINES` proof lines.

What this protects against: oversized or malformed requests (rejected before
any signature is checked), ambiguous encodings of sizes and hashes.

What it does not: nothing here checks signatures or proofs; the witness
does that (:mod:`sealtune.ledger.witness.service`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sealtune.errors import IntegrityError

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_SIZE = (1 << 63) - 1


def _size(text: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > _MAX_SIZE:
        raise ValueError("not a canonical tree size")
    return int(text)


def _hash(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64") from exc
    if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not a canonical 32-byte hash")
    return raw


@dataclass(frozen=True)
class AddCheckpoint:
    """An ``add-checkpoint`` request.

    Attributes:
        old_size: the size the submitter believes the witness last cosigned.
        proof: the RFC 6962 consistency proof from ``old_size`` to the checkpoint.
        checkpoint: the signed checkpoint note (text, blank line, signature lines).
    """

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str

    def to_body(self) -> bytes:
        """Encode the request body.

        Raises:
            IntegrityError: too many proof lines or a hash of the wrong length.
        """
        if len(self.proof) > MAX_PROOF_LINES or any(len(h) != 32 for h in self.proof):
            raise IntegrityError("a consistency proof must be at most 63 32-byte hashes")
        lines = [f"old {self.old_size}"]
        lines.extend(base64.b64encode(h).decode("ascii") for h in self.proof)
        return ("\n".join(lines) + "\n\n" + self.checkpoint).encode("utf-8")


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse an ``add-checkpoint`` request body strictly.

    Raises:
        IntegrityError: the body is too large, not UTF-8, or malformed (the
            message says which part; it never echoes the input).
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise IntegrityError("add-checkpoint request is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError("add-checkpoint request is not UTF-8") from None
    end = text.find("\n")
    if end < 0 or not text.startswith("old "):
        raise IntegrityError("add-checkpoint request must start with an 'old <size>' line")
    try:
        old = _size(text[4:end])
    except ValueError:
        raise IntegrityError("add-checkpoint old size is not a canonical decimal") from None
    proof: list[bytes] = []
    pos = end + 1
    while True:
        end = text.find("\n", pos)
        if end < 0:
            raise IntegrityError("add-checkpoint request has no empty line before the checkpoint")
        if end == pos:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise IntegrityError("add-checkpoint request has more than 63 proof lines")
        try:
            proof.append(_hash(text[pos:end]))
        except ValueError:
            raise IntegrityError("add-checkpoint proof line is not a base64 hash") from None
        pos = end + 1
    note = text[end + 1:]
    if not note:
        raise IntegrityError("add-checkpoint request has no checkpoint")
    return AddCheckpoint(old, tuple(proof), note)


def format_size(size: int) -> bytes:
    """The body of a 409 answer: ``<size>\\n``."""
    return f"{size}\n".encode("ascii")


def parse_size(body: bytes) -> int:
    """Parse a 409 ``text/x.tlog.size`` body.

    Raises:
        IntegrityError: not a canonical decimal followed by one newline.
    """
    try:
        text = body.decode("ascii")
        if not text.endswith("\n") or len(text) > 22:
            raise ValueError("no final newline")
        return _size(text[:-1])
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError("malformed text/x.tlog.size body") from None


def proof_lines(proof: Sequence[bytes]) -> list[str]:
    """Base64 lines of a proof (for display and JSON)."""
    return [base64.b64encode(h).decode("ascii") for h in proof]
