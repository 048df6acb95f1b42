"""Atomic, crash-safe output files for sealed-file operations.

:func:`atomic_output` yields a temp file next to the destination and moves it
into place only when the caller's block completes: write, flush, fsync,
rename over the destination, fsync of the directory. On Linux the temp file
is an unnamed ``O_TMPFILE`` inode, linked into the directory (``linkat``
through ``/proc/self/fd``) only once complete; elsewhere, or on file systems
without ``O_TMPFILE``, it is a named ``.<name>.*.part`` file (mode 0600).
Used by :mod:`sealtune.keys.files`. :func:`writing` turns an out-of-space
error (``ENOSPC``, ``EDQUOT``, ``EFBIG``) into a
:class:`~sealtune.errors.DiskFullError` that names the file being written,
for every writer (a write through a file object carries no file name).

What this protects against: a half-written file under the final name after
an exception or a crash (the rename is atomic and durable), and, with
``O_TMPFILE``, partial output under any name after a process killed outright
(SIGKILL, power loss) midway, since an unnamed inode vanishes with it; a
failure inside the block removes the temp file. What it does not: clean up
the named ``.part`` fallback after such a kill, or protect the output once it
is in place.
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from sealtune.errors import DiskFullError

_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def disk_full(exc: BaseException, path: object) -> DiskFullError | None:
    """A :class:`DiskFullError` naming ``path`` if ``exc`` means out of space, else None."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return DiskFullError(path, os.strerror(exc.errno))
    return None


@contextmanager
def writing(path: object) -> Iterator[None]:
    """Report running out of space inside the block as ``error: <path>: No space left...``."""
    try:
        yield
    except OSError as exc:
        full = disk_full(exc, path)
        if full is None:
            raise
        raise full from None


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def anonymous_fd(directory: Path) -> int | None:
    """An unnamed file in ``directory`` (Linux ``O_TMPFILE``), or None if unsupported.

    An unnamed file vanishes with the process: a SIGKILL or power loss midway
    leaves no partial plaintext under any name.
    """
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return None
    try:
        return os.open(directory, flag | os.O_WRONLY, 0o600)
    except OSError:  # file system without O_TMPFILE support: use a named temp file
        return None


def link_fd(fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` the name ``path`` (linkat via /proc, as open(2) shows).

    ``os.link`` calls link(2), which does not follow the /proc magic link, so
    linkat(2) with AT_SYMLINK_FOLLOW is called through libc.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    src = f"/proc/self/fd/{fd}".encode()
    if libc.linkat(_AT_FDCWD, src, _AT_FDCWD, os.fsencode(path), _AT_SYMLINK_FOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


@contextmanager
def atomic_output(dst: Path) -> Iterator[BinaryIO]:
    """Yield a temp file next to ``dst``; on success fsync and rename it into place.

    Prefers an unnamed ``O_TMPFILE`` inode that is linked into the directory
    only once complete, so a process killed midway leaves nothing behind.
    """
    directory = dst.parent
    fd = anonymous_fd(directory)
    anonymous = fd is not None
    if fd is None:
        with writing(dst):
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{dst.name}.", suffix=".part")
    else:
        tmp = str(directory / f".{dst.name}.{os.urandom(6).hex()}.part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
            if anonymous:
                link_fd(out.fileno(), tmp)
        os.replace(tmp, dst)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        full = disk_full(exc, dst)  # name the destination, not the source or the temp name
        if full is not None:
            raise full from None
        raise
    fsync_dir(directory)
