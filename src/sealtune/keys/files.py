"""Sealed files on disk: seal, open, rewrap and describe (format v1).

The path-level API over :mod:`sealtune.core.envelope`, used by the CLI and
the stages. Every file gets its own random data key, wrapped under one or
more KEKs through the :class:`~sealtune.keys.service.KeyService`.

What this protects against: a reader without an unwrapping KEK, and any
modification of a sealed file (``open_file`` raises ``IntegrityError`` and
leaves no plaintext behind: it writes to a temp file in the destination's
directory and renames it into place only after the final segment
authenticates). Writes are atomic (temp file, fsync, rename, fsync of the
directory), so a crash never leaves a half-written file under the final
name. ``rewrap_file`` rewrites only the inactive header slot in place, then
clears the old one, so it is crash-safe and its cost does not depend on the
file size.

What it does not: hide file sizes or names; revoke access from copies made
before a rewrap (the data key is unchanged; destroy the old KEK version for
that); or protect the plaintext once ``open_file`` has written it. Output
goes to an unnamed ``O_TMPFILE`` inode, linked into the directory only when
complete, so a process killed outright (SIGKILL, power loss) midway leaves
no partial plaintext; on file systems without ``O_TMPFILE`` it falls back to
a named ``.<name>.*.part`` temp file (mode 0600), which such a kill can
leave behind.

Layout: this module holds the four operations; the result records live in
:mod:`sealtune.keys.file_results` and the atomic output in
:mod:`sealtune.keys.atomic`; all public names are importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.core.envelope import (
    OpenedHeader,
    SealedHeader,
    make_prefix,
    new_data_key,
    open_stream,
    plan_rewrap,
    read_header,
    seal_stream,
    suite_for,
    unlock_header,
    wrap_aad,
)
from sealtune.errors import (
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    SealtuneError,
    UsageError,
)
from sealtune.keys.atomic import atomic_output
from sealtune.keys.base import WrappedKey
from sealtune.keys.file_results import (
    FileInfo,
    KeyEntry,
    OpenResult,
    RewrapResult,
    SealResult,
    key_entries,
)
from sealtune.keys.inventory import remember
from sealtune.keys.versions import CommitGuard

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
]

_HINT = (
    "the file was modified or damaged, or sealed under a different key with the same "
    "name; restore it from a trusted copy"
)


@contextmanager
def _io_errors(path: Path) -> Iterator[None]:
    """Report OS errors as a SealtuneError naming the file (never raw)."""
    try:
        yield
    except OSError as exc:
        name = exc.filename or path
        reason = exc.strerror or type(exc).__name__
        raise SealtuneError(
            f"{name}: {reason}", hint="check the path, permissions and free space"
        ) from None


def _check_paths(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise UsageError(f"{src} is not a readable file", hint="check the path")
    if dst.exists() and os.path.samefile(src, dst):
        raise UsageError(f"{src}: source and destination are the same file")
    if not dst.parent.is_dir():
        raise UsageError(f"{dst.parent} is not a directory", hint="create it first")


def _unwrapper(keys: KeyService) -> Callable[[WrappedKey, bytes], bytes | None]:
    def unwrap(entry: WrappedKey, aad: bytes) -> bytes | None:
        if keys.can_unwrap(entry):
            return keys.unwrap(entry, aad=aad)
        try:
            info = keys.info(entry.name)
        except KeyNotFoundError:
            return None
        if info.backend == entry.backend and info.state == "destroyed":
            raise KeyDestroyedError(
                f"key {entry.kek_uri} was destroyed",
                hint="the file can only be opened with another key it is wrapped for",
            )
        return None

    return unwrap


@contextmanager
def _audit_failures(keys: KeyService, action: str, path: Path) -> Iterator[None]:
    """Record a failed ``action`` on ``path``; an integrity failure names only the file."""
    try:
        yield
    except IntegrityError:
        keys.audit(action, str(path), outcome="failure", details={"error": "IntegrityError"})
        raise IntegrityError(f"{path} failed its integrity check", hint=_HINT) from None
    except SealtuneError as exc:
        keys.audit(action, str(path), outcome="failure", details={"error": type(exc).__name__})
        raise


def _labels(entries: Sequence[KeyEntry]) -> list[str]:
    return [f"{e.kek_uri}@{e.version}" for e in entries]


def seal_file(src: Path, dst: Path, *, keys: KeyService, key_names: Sequence[str]) -> SealResult:
    """Seal ``src`` into ``dst`` under a fresh data key wrapped by each named KEK.

    The payload suite is the algorithm of the first key named.

    Args:
        src: the plaintext file.
        dst: the sealed file to write (replaced atomically if it exists).
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
    _check_paths(src, dst)
    suite = suite_for(keys.info(names[0]).algorithm)
    data_key = new_data_key(suite)
    prefix = make_prefix(data_key, suite=suite)
    aad = wrap_aad(prefix)
    wrapped = [keys.wrap(name, data_key, aad=aad) for name in names]
    # The guard re-checks at commit that no wrapped version was retired meanwhile, and
    # holds the version lock shared until the file has its name (keys.versions).
    with (
        _io_errors(src),
        src.open("rb") as fin,
        CommitGuard(keys, wrapped, what=str(dst)) as guard,
        atomic_output(dst) as fout,
    ):
        info = seal_stream(fin, fout, prefix=prefix, data_key=data_key, wrapped=wrapped)
        guard.check()
    remember(keys.root, [dst])
    result = SealResult(
        dst,
        prefix.file_id.hex(),
        suite.algorithm,
        info.plaintext_size,
        info.sealed_size,
        key_entries(wrapped),
    )
    keys.audit(
        "file.seal",
        str(dst),
        details={
            "file_id": result.file_id,
            "suite": result.suite,
            "plaintext_size": result.plaintext_size,
            "sealed_size": result.sealed_size,
            "keys": _labels(result.entries),
        },
    )
    return result


def open_file(src: Path, dst: Path, *, keys: KeyService) -> OpenResult:
    """Authenticate and decrypt ``src`` into ``dst``.

    ``dst`` appears (atomically) only once the whole file authenticated; on
    any failure no plaintext file is left behind.

    Raises:
        IntegrityError: the file was modified, truncated, extended, or its
            wrapped key does not unwrap under the KEK of that name.
        KeyringError: no available KEK (``KeyNotFoundError``), a destroyed
            one (``KeyDestroyedError``), or an unreachable backend.
    """
    _check_paths(src, dst)
    with (
        _audit_failures(keys, "file.unseal", src),
        _io_errors(src),
        src.open("rb") as fin,
        atomic_output(dst) as fout,
    ):
        info = open_stream(fin, fout, unwrap=_unwrapper(keys))
    used = KeyEntry(info.unwrapped_by.kek_uri, info.unwrapped_by.version)
    result = OpenResult(
        dst,
        info.prefix.file_id.hex(),
        info.prefix.suite.algorithm,
        info.plaintext_size,
        used,
        info.warning,
    )
    details: dict[str, Any] = {
        "file_id": result.file_id,
        "suite": result.suite,
        "plaintext_size": result.plaintext_size,
        "key": f"{used.kek_uri}@{used.version}",
    }
    if info.warning:
        details["warning"] = info.warning
    keys.audit("file.unseal", str(src), details=details)
    return result


def _new_entries(
    opened: OpenedHeader,
    keys: KeyService,
    key_name: str,
    add: Sequence[str],
    remove: Sequence[str],
) -> list[WrappedKey]:
    uri = keys.info(key_name).uri
    current = list(opened.slot.entries)
    if all(e.kek_uri != uri for e in current):
        raise UsageError(
            f"the file is not wrapped under {uri}",
            hint="describe it to see which keys it is wrapped for",
        )
    drop = {keys.info(name).uri for name in remove}
    if uri in drop:
        raise UsageError(f"cannot both rewrap and remove {uri}")
    aad = wrap_aad(opened.prefix)
    data_key = opened.data_key
    new: list[WrappedKey] = []
    for entry in current:
        if entry.kek_uri == uri and all(n.kek_uri != uri for n in new):
            new.append(keys.wrap(key_name, data_key, aad=aad))
        elif entry.kek_uri != uri and entry.kek_uri not in drop:
            new.append(entry)
    for name in add:
        if keys.info(name).uri in {e.kek_uri for e in new}:
            raise UsageError(f"the file is already wrapped under key {name!r}")
        new.append(keys.wrap(name, data_key, aad=aad))
    return new


def _rewrite_header(
    path: Path,
    keys: KeyService,
    key_name: str,
    add: Sequence[str],
    remove: Sequence[str],
) -> tuple[OpenedHeader, list[WrappedKey]]:
    """Write the new entries to the inactive slot, then zero the old one, fsyncing each."""
    with _io_errors(path), path.open("r+b", buffering=0) as f:
        opened = unlock_header(read_header(f), unwrap=_unwrapper(keys))
        new = _new_entries(opened, keys, key_name, add, remove)
        for offset, data in plan_rewrap(opened, new):
            if os.pwrite(f.fileno(), data, offset) != len(data):
                raise OSError(f"short write to {path}")
            os.fsync(f.fileno())
    return opened, new


def rewrap_file(
    path: Path,
    *,
    keys: KeyService,
    key_name: str,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> RewrapResult:
    """Re-wrap the data key under the current version of ``key_name``, in place.

    Only the header is read and written, never the payload: the cost does
    not depend on the file size. The new entries go to the inactive slot
    (written and fsynced), then the old slot is zeroed (fsynced); a crash at
    any point leaves a file that opens.

    Args:
        path: the sealed file.
        keys: the workspace's key service.
        key_name: the KEK whose entry is replaced by a wrap under its current version.
        add: further KEKs to wrap the data key under.
        remove: KEKs whose entries are dropped.

    Raises:
        IntegrityError: the header does not authenticate.
        UsageError: the file is not wrapped under ``key_name``, or the new
            entries do not fit in a slot.
        KeyringError: see :func:`open_file`.
    """
    with _audit_failures(keys, "file.rewrap", path):
        opened, new = _rewrite_header(path, keys, key_name, add, remove)
    result = RewrapResult(
        path,
        opened.prefix.file_id.hex(),
        opened.slot.generation + 1,
        key_entries(opened.slot.entries),
        key_entries(new),
        opened.warning is not None,
    )
    keys.audit(
        "file.rewrap",
        str(path),
        details={
            "file_id": result.file_id,
            "generation": result.generation,
            "before": _labels(result.before),
            "after": _labels(result.after),
            "repaired": result.repaired,
        },
    )
    return result


def describe_file(path: Path) -> FileInfo:
    """Read a sealed file's header facts without any key.

    Nothing here is authenticated (that needs the data key): use it to see
    which keys a file needs, not as evidence.

    Raises:
        IntegrityError: the file is not a well-formed sealtune v1 file.
    """
    try:
        with _io_errors(path), path.open("rb") as f:
            header: SealedHeader = read_header(f)
            size = os.fstat(f.fileno()).st_size
    except IntegrityError:
        raise IntegrityError(f"{path} is not a well-formed sealtune v1 file", hint=_HINT) from None
    prefix = header.prefix
    found = header.by_generation()
    slot = found[0][1] if found else None
    stream = prefix.suite.stream(prefix.segment_size)
    return FileInfo(
        path,
        prefix.file_id.hex(),
        prefix.suite.algorithm,
        prefix.suite.title,
        size,
        stream.plaintext_size(size - prefix.payload_offset),
        prefix.segment_size,
        prefix.slot_size,
        slot.generation if slot else 0,
        key_entries(slot.entries) if slot else (),
    )
