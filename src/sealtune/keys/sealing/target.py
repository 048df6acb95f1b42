"""Sealing targets: the one place a data key, its prefix and its wrapped entries are made.

A :class:`SealingTarget` is what sealing a file needs: the file's prefix
(suite, file id, commitment to the data key), the data key wrapped under
each KEK (bound to that prefix by :func:`~sealtune.core.envelope.wrap_aad`),
and the data key itself. :func:`new_target` makes one through the
workspace's :class:`~sealtune.keys.service.KeyService` (each wrap audited);
:func:`file_target` recovers the one of an existing sealed file (to seal
more under the same key, e.g. a resumed job's checkpoints).

A target crosses into a sandbox without the keyring: either as its public
half (:meth:`SealingTarget.to_dict`, JSON: the prefix and the wrapped
entries, no key) plus the data key over the key pipe, rebuilt with
:meth:`SealingTarget.from_dict` and :meth:`SealingTarget.with_key`; or whole,
as one framed secret for the key pipe (:meth:`SealingTarget.to_bytes`,
:meth:`SealingTarget.from_bytes`). Either way the data key is checked
against the prefix's commitment when the target is rebuilt.

What this protects against: a data key sealed under a prefix that does not
commit to it (refused before anything is written), wrapped entries copied in
from another file (the wrap is bound to the prefix), the keyring entering a
sandbox (only data keys do), a malformed frame on the key pipe (refused,
nothing of it quoted). What it does not: the data key is a plain
``bytearray`` in memory until :meth:`SealingTarget.wipe` (Python may have
made other copies); several files sealed with one target share its file id
(sound: each has a fresh salt and nonce prefix; their names tell them apart).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sealtune.core.envelope import (
    PREFIX_BYTES,
    Prefix,
    SealInfo,
    key_is_committed,
    make_prefix,
    new_data_key,
    parse_prefix,
    read_header,
    seal_stream,
    suite_for,
    unlock_header,
    wrap_aad,
)
from sealtune.core.wrapped_key import WrappedKey
from sealtune.errors import ConfigError, IntegrityError, UsageError

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

__all__ = ["SealingTarget", "file_target", "new_target"]

#: The first bytes of a framed target (:meth:`SealingTarget.to_bytes`), version 1.
FRAME_MAGIC = b"STGT\x01"
_MAX_ENTRIES = 64
_MAX_URI = 512
_MAX_BLOB = 1 << 16
_MAX_KEY = 64


@dataclass(frozen=True)
class SealingTarget:
    """How to seal files: the prefix, the data key wrapped for it, and the data key.

    Attributes:
        prefix: the sealed files' prefix (committing to the data key).
        wrapped: the data key wrapped under each KEK, bound to ``prefix``.
        data_key: the data key (secret; never printed); ``None`` in the public
            half parsed from :meth:`from_dict` until :meth:`with_key` adds it.
    """

    prefix: Prefix
    wrapped: tuple[WrappedKey, ...]
    data_key: bytearray | None = field(default=None, repr=False, compare=False)

    @property
    def file_id(self) -> str:
        """The prefix's file id, in hex."""
        return self.prefix.file_id.hex()

    @property
    def entries(self) -> tuple[str, ...]:
        """``<kek uri>@<version>`` of each wrapped entry (what manifests record)."""
        return tuple(f"{w.kek_uri}@{w.version}" for w in self.wrapped)

    def with_key(self, data_key: bytes | bytearray) -> SealingTarget:
        """This target with ``data_key``, checked against the prefix's commitment.

        Raises:
            UsageError: the key is not the one the prefix commits to.
        """
        if not key_is_committed(self.prefix, bytes(data_key)):
            raise UsageError("the data key does not match the prefix's commitment")
        return replace(self, data_key=bytearray(data_key))

    def _key(self) -> bytes:
        """The data key; refused when absent or wiped (it no longer matches the prefix)."""
        if self.data_key is None:
            raise UsageError("this sealing target has no data key",
                             hint="add it with with_key() (it comes over the key pipe)")
        key = bytes(self.data_key)
        if not key_is_committed(self.prefix, key):
            raise UsageError("the data key does not match the prefix's commitment",
                             hint="was the target wiped? make a new one")
        return key

    def seal(self, src: BinaryIO, dst: BinaryIO) -> SealInfo:
        """Seal ``src`` (read to its end) into ``dst`` under this target (sequential writes).

        Raises:
            UsageError: no data key, or the entries do not fit in a header slot.
        """
        return seal_stream(src, dst, prefix=self.prefix, data_key=self._key(),
                           wrapped=self.wrapped)

    def wipe(self) -> None:
        """Zero the data key in place (best effort: other copies may exist)."""
        if self.data_key is not None:
            self.data_key[:] = bytes(len(self.data_key))

    def to_dict(self) -> dict[str, Any]:
        """The public half as JSON: the prefix (hex) and the wrapped entries; never the key."""
        return {"prefix": self.prefix.encode().hex(),
                "wrapped": [{"kek_uri": w.kek_uri, "version": w.version,
                             "blob": base64.b64encode(w.blob).decode()} for w in self.wrapped]}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SealingTarget:
        """The public half from :meth:`to_dict`'s JSON (no data key yet).

        Raises:
            ConfigError: not a prefix and wrapped entries (``where`` names it).
        """
        try:
            prefix = parse_prefix(bytes.fromhex(data["prefix"]))
            wrapped = tuple(WrappedKey(str(w["kek_uri"]), int(w["version"]),
                                       base64.b64decode(w["blob"], validate=True))
                            for w in data["wrapped"])
        except (KeyError, TypeError, ValueError, IntegrityError):
            raise ConfigError(f"{where}: needs prefix (hex) and wrapped keys") from None
        if not wrapped:
            raise ConfigError(f"{where}: no wrapped key")
        return cls(prefix, wrapped)

    def to_bytes(self) -> bytearray:
        """The whole target, data key included, framed for a sandbox's key pipe.

        ``magic | u8 key length | key | prefix (68) | u16 entries | per entry:
        u16 URI length, URI, u32 version, u32 blob length, blob`` (big-endian).
        Zero the result once it is handed over (the sandbox's pipe writer does).
        """
        key = self._key()
        out = bytearray(FRAME_MAGIC) + struct.pack(">B", len(key)) + key + self.prefix.encode()
        out += struct.pack(">H", len(self.wrapped))
        for w in self.wrapped:
            uri = w.kek_uri.encode()
            out += struct.pack(">H", len(uri)) + uri + struct.pack(">II", w.version, len(w.blob))
            out += w.blob
        return out

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray) -> SealingTarget:
        """Rebuild a target from :meth:`to_bytes` (inside a sandbox: no keyring needed).

        Raises:
            ConfigError: a malformed frame (nothing of it is quoted).
            UsageError: the key is not the one the prefix commits to.
        """
        frame = _Frame(memoryview(raw))
        if bytes(frame.take(len(FRAME_MAGIC))) != FRAME_MAGIC:
            raise ConfigError("a sealing target frame must start with its magic")
        key = bytearray(frame.take(frame.number(">B", _MAX_KEY)))
        try:
            prefix = parse_prefix(bytes(frame.take(PREFIX_BYTES)))
        except IntegrityError:
            raise ConfigError("a sealing target frame holds a malformed prefix") from None
        entries = []
        for _ in range(frame.number(">H", _MAX_ENTRIES)):
            uri = bytes(frame.take(frame.number(">H", _MAX_URI))).decode("utf-8", "replace")
            version = frame.number(">I", 1 << 31)
            blob = bytes(frame.take(frame.number(">I", _MAX_BLOB)))
            entries.append(WrappedKey(uri, version, blob))
        if frame.rest or not entries or ":" not in entries[0].kek_uri:
            raise ConfigError("a sealing target frame is malformed (entries or length)")
        try:
            return cls(prefix, tuple(entries)).with_key(key)
        finally:
            key[:] = bytes(len(key))


class _Frame:
    """Bounded reads from a frame: each read checks the length left (linear, no copies)."""

    def __init__(self, view: memoryview) -> None:
        self._view, self._at = view, 0

    @property
    def rest(self) -> int:
        return len(self._view) - self._at

    def take(self, n: int) -> memoryview:
        if n > self.rest:
            raise ConfigError("a sealing target frame is truncated")
        part = self._view[self._at:self._at + n]
        self._at += n
        return part

    def number(self, fmt: str, limit: int) -> int:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        if value > limit:
            raise ConfigError("a sealing target frame has a field out of range")
        return int(value)


def new_target(keys: KeyService, key_names: Sequence[str]) -> SealingTarget:
    """A fresh data key, its prefix, and the key wrapped under each of ``key_names``.

    The payload suite is the algorithm of the first key named. Each wrap goes
    through the key service (audited there).

    Raises:
        UsageError: no key, or a duplicate key.
        KeyringError: a KEK is missing, destroyed or its backend unavailable.
    """
    names = list(key_names)
    if not names or len(set(names)) != len(names):
        raise UsageError("name one or more distinct keys to seal under")
    suite = suite_for(keys.info(names[0]).algorithm)
    data_key = new_data_key(suite)
    prefix = make_prefix(data_key, suite=suite)
    aad = wrap_aad(prefix)
    wrapped = tuple(keys.wrap(name, data_key, aad=aad) for name in names)
    return SealingTarget(prefix, wrapped, bytearray(data_key))


def file_target(path: Path, *, keys: KeyService) -> SealingTarget:
    """The target of the sealed file ``path``: its prefix, current entries and data key.

    The data key is unwrapped through the key service (audited there); the
    entries are those of the header's verified slot (a rotation may have
    re-wrapped them since the file was written).

    Raises:
        IntegrityError: the header does not authenticate (the message names ``path``).
        KeyringError: none of the file's KEKs is available.
    """
    with path.open("rb") as fh:
        try:
            opened = unlock_header(read_header(fh), unwrap=keys.unwrap_if_held)
        except IntegrityError as exc:
            raise IntegrityError(f"{path} failed its integrity check", hint=exc.hint) from None
    return SealingTarget(opened.prefix, tuple(opened.slot.entries), bytearray(opened.data_key))
