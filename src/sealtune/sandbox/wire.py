"""The wire format between a sandbox and its parent: the key pipe and the event channel.

Both sides import this module: the parent frames the secrets (data keys) it
hands over the key pipe (:func:`encode_secrets`) and decodes the events it
reads (:func:`decode_event`); the launcher inside reads the secrets
(:func:`read_secrets`) and the entry writes events through
:class:`EventWriter`. It also fixes the paths the sandbox sees
(:data:`WORKDIR`, :data:`INDIR`, :data:`OUTDIR`) and how an entry is named
(:data:`ENTRY_RE`).

What this protects against: sample text on the event channel by accident
(an event is a short JSON object of numbers, booleans and short tokens from
a narrow alphabet, at most :data:`MAX_EVENT_BYTES`, written in one
``write``; anything else is a :class:`ProtocolError` that quotes nothing), a
secret frame that overruns or lies about its length. What it does NOT: code
that *wants* to leak can still encode data in numbers or tokens; the format
only prevents accidental leaks (log lines, tracebacks with sample text).

Standard library only: imported inside the sandbox, where start-up must be fast.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path

WORKDIR = Path("/tmp")  # noqa: S108 - the sandbox's private tmpfs, not the host's /tmp
OUTDIR = Path("/sandbox/out")
INDIR = Path("/sandbox/in")

MAX_EVENT_BYTES = 4096  # <= PIPE_BUF: one write() per line is atomic
MAX_SECRETS = 100_000
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_.,:/+=-]{0,128}$")
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # an error's data-free condition code
EVENT_TYPES = frozenset({"progress", "event", "error"})
#: An entry: ``package.module`` (its ``main``) or ``package.module:function``.
ENTRY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$", re.ASCII)

Scalar = int | float | bool | str | None


class ProtocolError(Exception):
    """A frame or event that does not follow the wire format (no payload quoted)."""


# -- wire format: secrets -------------------------------------------------------


def encode_secrets(secrets: Mapping[str, bytes | bytearray]) -> bytearray:
    """Frame secrets as ``u16 name length, name, u32 value length, value`` each."""
    if len(secrets) > MAX_SECRETS:
        raise ProtocolError("too many secrets for one sandbox")
    out = bytearray()
    for name, value in secrets.items():
        if not KEY_NAME_RE.fullmatch(name):
            raise ProtocolError("secret names must match [A-Za-z0-9_.:-]{1,128}")
        raw = name.encode()
        out += struct.pack(">H", len(raw)) + raw + struct.pack(">I", len(value)) + value
    return out


def _read_exact(fd: int, n: int) -> bytearray:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise ProtocolError("key pipe closed in the middle of a frame")
        buf += chunk
    return buf


def read_secrets(fd: int) -> dict[str, bytearray]:
    """Read framed secrets from ``fd`` until EOF, then close it."""
    secrets: dict[str, bytearray] = {}
    try:
        while True:
            head = os.read(fd, 2)
            if not head:
                return secrets
            if len(head) == 1:
                head += _read_exact(fd, 1)
            (name_len,) = struct.unpack(">H", head)
            name = bytes(_read_exact(fd, name_len)).decode()
            (value_len,) = struct.unpack(">I", bytes(_read_exact(fd, 4)))
            if not KEY_NAME_RE.fullmatch(name) or len(secrets) >= MAX_SECRETS:
                raise ProtocolError("bad secret frame")
            secrets[name] = _read_exact(fd, value_len)
    finally:
        os.close(fd)


# -- wire format: events --------------------------------------------------------


def _check_value(value: object) -> Scalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and TOKEN_RE.fullmatch(value):
        return value
    raise ProtocolError("event fields must be numbers, booleans or short tokens")


def validate_event(obj: object) -> dict[str, Scalar]:
    """Check one decoded event; return it. Raises :class:`ProtocolError`."""
    if not isinstance(obj, dict) or obj.get("type") not in EVENT_TYPES:
        raise ProtocolError("event must be an object with a known type")
    name = obj.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ProtocolError("event name must match [a-z][a-z0-9_]{0,63}")
    if len(obj) > 32:
        raise ProtocolError("too many event fields")
    out: dict[str, Scalar] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not NAME_RE.fullmatch(key):
            raise ProtocolError("event field names must match [a-z][a-z0-9_]{0,63}")
        out[key] = _check_value(value)
    return out


def decode_event(line: bytes) -> dict[str, Scalar]:
    """Decode and validate one JSON line from the event channel."""
    if len(line) > MAX_EVENT_BYTES:
        raise ProtocolError("event line too long")
    try:
        obj = json.loads(line)
    except ValueError:
        raise ProtocolError("event line is not JSON") from None
    return validate_event(obj)


class EventWriter:
    """Writes validated JSON lines to the event pipe (one ``write`` per event)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def send(self, type_: str, name: str, **fields: Scalar) -> None:
        event = validate_event({"type": type_, "name": name, **fields})
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        if len(line) > MAX_EVENT_BYTES:
            raise ProtocolError("event line too long")
        os.write(self._fd, line)

    def event(self, name: str, **fields: Scalar) -> None:
        """A named milestone, e.g. ``event("data_decrypted", files=3)``."""
        self.send("event", name, **fields)

    def progress(self, step: int, total: int | None, *, loss: float | None = None) -> None:
        """Training progress: aggregate numbers only."""
        self.send("progress", "progress", step=step, total=total, loss=loss)

    def error(self, exc: BaseException) -> None:
        """Report an exception by class name and its ``code`` token only (never its message).

        A sealtune error may carry a ``code`` naming a data-free condition (see
        :class:`sealtune.errors.SealtuneError`); the parent maps the codes it knows to
        their message and fix.
        """
        kind = type(exc).__name__
        code = getattr(exc, "code", None)
        fields: dict[str, Scalar] = {"kind": kind if TOKEN_RE.fullmatch(kind) else "Exception"}
        if isinstance(code, str) and CODE_RE.fullmatch(code):
            fields["code"] = code
        self.send("error", "error", **fields)


def environ_names_digest(names: set[str] | list[str]) -> str:
    """A digest of a set of variable names: the self-check reports it, the parent compares."""
    return hashlib.sha256(",".join(sorted(names)).encode()).hexdigest()[:32]
