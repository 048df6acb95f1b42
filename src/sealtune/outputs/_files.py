"""Atomic, crash-safe writes of regular files (private to :mod:`sealtune.outputs`).

:func:`atomic_file` yields a temp file in the destination's directory and
moves it into place only when the caller's block completes: flush, fsync,
rename (or link, to create without replacing), fsync of the directory. On
Linux the temp file is an unnamed ``O_TMPFILE`` inode linked in only once
complete; elsewhere, without ``/proc``, or on file systems without
``O_TMPFILE``, a named ``.<name>.*.part`` file (mode 0600).

What this protects against: a half-written file under the final name after
an exception or a crash, and (with ``O_TMPFILE``) partial output under any
name after a process killed outright (SIGKILL, power loss), since an unnamed
inode vanishes with it; a failure inside the block removes the temp file.
What it does not: clean up the named ``.part`` fallback after such a kill,
keep the replaced file's mode or owner, or protect the file once in place.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from sealtune.errors import UsageError

_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def closing_quietly_on_error(fh: BinaryIO) -> Iterator[BinaryIO]:
    """Close ``fh`` after the block; after a failure, without a second error from its flush."""
    try:
        yield fh
        fh.flush()
    except BaseException:
        with suppress(OSError):
            fh.close()
        raise
    fh.close()


def _anonymous_fd(directory: Path) -> int | None:
    """An unnamed file in ``directory`` (Linux ``O_TMPFILE``), or None if unusable.

    Naming it later goes through ``/proc/self/fd``: without ``/proc`` (some
    sandboxes) use a named temp file instead.
    """
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, flag | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError:  # file system without O_TMPFILE support: use a named temp file
        return None


def _link_fd(fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` the name ``path`` (linkat via /proc, as open(2) shows).

    ``os.link`` calls link(2), which does not follow the /proc magic link, so
    linkat(2) with AT_SYMLINK_FOLLOW is called through libc. Fails with
    EEXIST if ``path`` exists.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    src = f"/proc/self/fd/{fd}".encode()
    if libc.linkat(_AT_FDCWD, src, _AT_FDCWD, os.fsencode(path), _AT_SYMLINK_FOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def _exists(path: Path) -> UsageError:
    return UsageError(f"{path} already exists", hint="choose another path or allow overwriting")


def _commit(fd: int, tmp: str | None, dst: Path, *, overwrite: bool) -> None:
    """Put the complete temp file (unnamed ``fd``, or named ``tmp``) at ``dst``.

    Without ``overwrite`` the final step is a link, which fails if ``dst``
    appeared meanwhile: create-if-absent stays atomic.
    """
    try:
        if tmp is None and not overwrite:
            _link_fd(fd, str(dst))
            return
        named = tmp
        if named is None:
            named = str(dst.parent / f".{dst.name}.{os.urandom(6).hex()}.part")
            _link_fd(fd, named)
        try:
            if overwrite:
                os.replace(named, dst)
            else:
                os.link(named, dst)
        finally:
            with suppress(FileNotFoundError):  # gone already after a replace
                os.unlink(named)
    except FileExistsError:
        raise _exists(dst) from None


@contextmanager
def atomic_file(dst: Path, *, overwrite: bool, mode: int) -> Iterator[BinaryIO]:
    """Yield a temp file for ``dst``; when the block completes, fsync it and put it in place.

    Raises:
        UsageError: ``dst`` exists (now, or by the end) and ``overwrite`` is false.
    """
    if not overwrite and os.path.lexists(dst):
        raise _exists(dst)
    directory = dst.parent
    fd = _anonymous_fd(directory)
    tmp: str | None = None
    if fd is None:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{dst.name}.", suffix=".part")
    try:
        with closing_quietly_on_error(os.fdopen(fd, "wb")) as out:
            if mode != 0o600:
                os.fchmod(out.fileno(), mode)
            yield out
            out.flush()
            os.fsync(out.fileno())
            _commit(out.fileno(), tmp, dst, overwrite=overwrite)
    except BaseException:
        if tmp is not None:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    fsync_dir(directory)
