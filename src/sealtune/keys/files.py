"""Sealed files: seal, open, verify, rewrap and describe (format v1).

The path-level API over :mod:`sealtune.core.envelope`, used by the CLI and
the stages. Every file gets its own random data key, wrapped under one or
more KEKs through the :class:`~sealtune.keys.service.KeyService`
(:func:`sealtune.keys.sealing.new_target`). Outputs go
through :func:`sealtune.outputs.open_output` and inputs through
:func:`sealtune.outputs.open_input`, so either may be ``-`` (the standard
streams), a device or a FIFO, and a device node is never replaced by a file.

What this protects against: a reader without an unwrapping KEK, and any
modification of a sealed file (``open_file`` and ``verify_file`` raise
``IntegrityError``). ``open_file`` releases no plaintext from a file that
fails its check: to a regular file it writes an unnamed temp file renamed
into place only after the final segment authenticates (a SIGKILL midway
leaves nothing; see :mod:`sealtune.outputs`); to anything else (``-``, a
pipe, a device, a socket) it first authenticates the whole file writing
nothing, then decrypts it again to the output, every segment authenticated
before it is written. A non-seekable input (a pipe) is first copied to an
unnamed temp file (ciphertext only) for that. ``rewrap_file`` rewrites only
the inactive header slot in place, then clears the old one, so it is
crash-safe and its cost does not depend on the file size.

What it does not: hide file sizes or names; revoke access from copies made
before a rewrap (the data key is unchanged; destroy the old KEK version for
that); protect the plaintext once written; or make a streamed output
all-or-nothing against a concurrent writer: if the sealed file is modified
between the two passes, the reader of a stream may receive a prefix of the
true plaintext (whole authenticated segments, none of them forged) before the
command fails with an integrity error. Check the exit status.

Layout: this module holds the payload operations (seal, open, verify); the
header-only ones (rewrap, describe) live in :mod:`sealtune.keys.file_header`
and the result records in :mod:`sealtune.keys.file_results`; all public
names are importable from here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from sealtune.core.envelope import (
    OpenInfo,
    decrypt_payload,
    open_stream,
    read_header,
    unlock_header,
)
from sealtune.errors import UsageError
from sealtune.keys._file_io import audit_failures, io_errors
from sealtune.keys.file_header import describe_file, rewrap_file
from sealtune.keys.file_results import (
    FileInfo,
    KeyEntry,
    OpenResult,
    RewrapResult,
    SealResult,
    key_entries,
    labels,
)
from sealtune.keys.inventory import remember
from sealtune.keys.sealing.target import new_target
from sealtune.keys.versions import CommitGuard
from sealtune.outputs import Output, Target, is_stdio, open_input, open_output, resolve_output

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

__all__ = [
    "FileInfo",
    "KeyEntry",
    "OpenResult",
    "RewrapResult",
    "SealResult",
    "describe_file",
    "open_file",
    "rewrap_file",
    "seal_file",
    "verify_file",
]


def _input_name(src: Target) -> str:
    return "<stdin>" if is_stdio(src) else os.fspath(src)


def _check_paths(src: Target, out: Output) -> None:
    """Refuse to write over the input (it would be truncated before it is read)."""
    if is_stdio(src) or out.path is None or not out.path.exists():
        return
    try:
        same = os.path.samefile(src, out.path)
    except OSError:  # the input is missing: open_input says so
        return
    if same:
        raise UsageError(f"{src}: source and destination are the same file")


def seal_file(src: Target, dst: Target, *, keys: KeyService,
              key_names: Sequence[str]) -> SealResult:
    """Seal ``src`` into ``dst`` under a fresh data key wrapped by each named KEK.

    The payload suite is the algorithm of the first key named.

    Args:
        src: the plaintext: a file, a device or FIFO, or ``-`` (standard input).
        dst: where the sealed bytes go: a file (replaced atomically if it
            exists), a device, FIFO or socket (written through), or ``-``.
        keys: the workspace's key service.
        key_names: KEK names, at least one, no duplicates.

    Raises:
        UsageError: no key, a duplicate key, bad paths, or too many keys for a slot.
        KeyringError: a KEK is missing, destroyed or its backend unavailable;
            ``KeyDestroyedError`` also when a version it was wrapped under was
            retired before the file was published (nothing is left under ``dst``).
    """
    names = list(key_names)
    if not names or len(set(names)) != len(names):
        raise UsageError("name one or more distinct keys to seal under")
    out = resolve_output(dst)
    _check_paths(src, out)
    with io_errors(_input_name(src)), open_input(src) as fin:
        target = new_target(keys, names)
        try:
            # The guard re-checks at commit that no wrapped version was retired meanwhile,
            # and holds the version lock shared until the file has its name (keys.versions).
            with CommitGuard(keys, target.wrapped, what=out.name) as guard, \
                    open_output(out) as fout:
                info = target.seal(fin, fout)
                guard.check()
        finally:
            target.wipe()
    if out.kind == "file" and out.path is not None:
        remember(keys.root, [out.path])
    result = SealResult(Path(out.name), target.file_id, target.prefix.suite.algorithm,
                        info.plaintext_size, info.sealed_size, key_entries(target.wrapped))
    keys.audit("file.seal", out.name, details={
        "file_id": result.file_id,
        "suite": result.suite,
        "plaintext_size": result.plaintext_size,
        "sealed_size": result.sealed_size,
        "keys": labels(result.entries),
        "output": out.kind,
    })
    return result


class _Discard:
    """A sink that drops what it is given: authenticate without writing plaintext."""

    def write(self, data: bytes | memoryview) -> int:
        return len(data)


@contextmanager
def _seekable(fin: BinaryIO) -> Iterator[BinaryIO]:
    """``fin`` itself if it can seek; else its rest copied to an unnamed temp file.

    The copy is ciphertext only (nothing is decrypted yet) and vanishes with
    the process (``TemporaryFile`` is an unnamed ``O_TMPFILE`` inode on Linux).
    """
    if fin.seekable():
        yield fin
        return
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(fin, spool, 1 << 20)
        spool.seek(0)
        yield cast(BinaryIO, spool)


def _open_in_two_passes(fin: BinaryIO, fout: BinaryIO, *, keys: KeyService) -> OpenInfo:
    """Authenticate the whole file writing nothing, then decrypt it to ``fout``.

    For outputs that cannot be discarded (pipes, devices, the standard
    output): nothing reaches them unless every segment authenticated.
    """
    with _seekable(fin) as src:
        start = src.tell()
        opened = unlock_header(read_header(src), unwrap=keys.unwrap_if_held)
        decrypt_payload(src, cast(BinaryIO, _Discard()), opened=opened)
        src.seek(start + opened.prefix.payload_offset)
        size = decrypt_payload(src, fout, opened=opened)
    return OpenInfo(opened.prefix, opened.slot, opened.unwrapped_by, opened.warning, size)


def _record(path: str, info: OpenInfo) -> tuple[OpenResult, dict[str, Any]]:
    """The result of an open or verify, and its audit details (names and sizes, no data)."""
    used = KeyEntry(info.unwrapped_by.kek_uri, info.unwrapped_by.version)
    result = OpenResult(Path(path), info.prefix.file_id.hex(), info.prefix.suite.algorithm,
                        info.plaintext_size, used, info.warning)
    details: dict[str, Any] = {
        "file_id": result.file_id,
        "suite": result.suite,
        "plaintext_size": result.plaintext_size,
        "key": f"{used.kek_uri}@{used.version}",
    }
    if info.warning:
        details["warning"] = info.warning
    return result, details


def open_file(src: Target, dst: Target, *, keys: KeyService,
              allow_terminal: bool = False) -> OpenResult:
    """Authenticate and decrypt ``src`` into ``dst``.

    Nothing is released unless the whole file authenticates: a regular file
    ``dst`` appears (atomically) only then; any other output (``-``, a pipe,
    a device, a socket) receives the plaintext only after a first pass
    authenticated every segment (see the module docstring for its limit).

    Args:
        src: the sealed file, a device or FIFO, or ``-`` (standard input).
        dst: a path, a device, FIFO or socket, or ``-`` (standard output).
        keys: the workspace's key service.
        allow_terminal: write the plaintext even when the output is a
            terminal (recorded in the audit log).

    Raises:
        IntegrityError: the file was modified, truncated, extended, or its
            wrapped key does not unwrap under the KEK of that name.
        KeyringError: no available KEK (``KeyNotFoundError``), a destroyed
            one (``KeyDestroyedError``), or an unreachable backend.
        UsageError: a directory or other unusable output, or a terminal
            without ``allow_terminal``.
    """
    out = resolve_output(dst)
    _check_paths(src, out)
    name = _input_name(src)
    with (
        open_input(src) as fin,  # a missing input is a usage error, not an audited failure
        audit_failures(keys, "file.unseal", name),
        io_errors(name),
        open_output(out, plaintext=True, allow_terminal=allow_terminal) as fout,
    ):
        if out.atomic:
            info = open_stream(fin, fout, unwrap=keys.unwrap_if_held)
        else:
            info = _open_in_two_passes(fin, fout, keys=keys)
    result, details = _record(out.name, info)
    details["output"] = out.kind
    if allow_terminal:
        details["allow_terminal"] = True
    keys.audit("file.unseal", name, details=details)
    return result


def verify_file(src: Target, *, keys: KeyService) -> OpenResult:
    """Authenticate every segment of ``src`` and write nothing (audited as ``file.verify``).

    The header must unwrap under a KEK held here, as for :func:`open_file`;
    the plaintext is decrypted segment by segment and dropped.

    Args:
        src: the sealed file, a device or FIFO, or ``-`` (standard input).
        keys: the workspace's key service.

    Raises:
        IntegrityError: see :func:`open_file`.
        KeyringError: see :func:`open_file`.
    """
    name = _input_name(src)
    with open_input(src) as fin, audit_failures(keys, "file.verify", name), io_errors(name):
        info = open_stream(fin, cast(BinaryIO, _Discard()), unwrap=keys.unwrap_if_held)
    result, details = _record(name, info)
    keys.audit("file.verify", name, details=details)
    return result
