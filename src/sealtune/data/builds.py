"""Dataset build directories: made under a lock, renamed into place, cleaned up after a crash.

Ingest writes a dataset into ``datasets/.build-<name>-<random>/`` and renames
it to ``datasets/<name>`` only when complete (:func:`start_build`,
:meth:`Build.finish`). A process killed midway (SIGKILL, power loss) cannot
remove its directory; :func:`remove_stale_builds`, run at the start of the
next ingest, does, without ever touching a build that is still running:

* each live build holds an exclusive ``flock`` on ``<build>/.lock`` from
  just after it is made until just before it is renamed or removed; the
  kernel drops the lock when the process dies, however it dies;
* ``datasets/.lock`` (never removed) closes the two gaps in that: a build
  is made and locked, and unlocked and renamed, while holding it shared, and
  the cleaner inspects build directories while holding it exclusively, so
  it never sees a live build without its lock.

A build directory whose lock is free, or that has no lock file, is stale
and removed. Its files are sealed (no plaintext is ever written there), so a
leftover was never a disclosure, only clutter.

A reviewed dataset (:mod:`sealtune.data.review`) is rebuilt the same way and
swapped with the published one in one step (:meth:`Build.exchange`:
``renameat2(RENAME_EXCHANGE)``); the old files land in the build directory,
unlocked, so a kill right after the swap leaves a stale build, never a
dataset that is half old and half new.

What this protects against: stale build directories piling up, and one
ingest deleting another's work in progress. What it does not: ``flock`` is
advisory (other programs can still delete the directory) and unreliable on
some network file systems (NFS before v4, some FUSE mounts); keep the
workspace on a local file system.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sealtune.errors import SealtuneError
from sealtune.outputs import fsync_dir

__all__ = ["BUILD_PREFIX", "LOCK_FILE", "Build", "remove_stale_builds", "start_build"]

BUILD_PREFIX = ".build-"
LOCK_FILE = ".lock"


@contextmanager
def _locked(root: Path, operation: int) -> Iterator[None]:
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class Build:
    """A build directory in progress, locked by this process.

    Attributes:
        root: the ``datasets`` directory.
        path: the build directory.
    """

    root: Path
    path: Path
    _fd: int

    def finish(self, final: Path) -> None:
        """Rename the build to ``final`` (its lock file removed first)."""
        with _locked(self.root, fcntl.LOCK_SH):
            os.unlink(self.path / LOCK_FILE)
            os.rename(self.path, final)
        os.close(self._fd)
        fsync_dir(self.root)

    def exchange(self, final: Path) -> None:
        """Swap the build with the existing ``final`` atomically, then remove the old files.

        Raises:
            SealtuneError: the file system cannot swap directories atomically
                (the build is left to :meth:`abandon`; ``final`` is untouched).
        """
        with _locked(self.root, fcntl.LOCK_SH):
            os.unlink(self.path / LOCK_FILE)
            try:
                _rename_exchange(self.path, final)
            except BaseException:
                open(self.path / LOCK_FILE, "a").close()  # still ours: abandon() removes it
                raise
        fsync_dir(self.root)
        shutil.rmtree(self.path, ignore_errors=True)  # the old files, now unlocked
        os.close(self._fd)

    def abandon(self) -> None:
        """Remove the build directory (the lock is held until it is gone)."""
        try:
            shutil.rmtree(self.path, ignore_errors=True)
        finally:
            os.close(self._fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _rename_exchange(a: Path, b: Path) -> None:
    """``renameat2(a, b, RENAME_EXCHANGE)``: both paths stay valid at every instant."""
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "renameat2", None)
    rc = -1 if func is None else func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                                      _RENAME_EXCHANGE)
    if rc != 0:
        err = errno.ENOSYS if func is None else ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise SealtuneError(f"{b.parent}: this file system cannot swap directories "
                                "atomically (renameat2 RENAME_EXCHANGE)",
                                hint="keep the workspace on a local Linux file system "
                                     "(ext4, xfs, btrfs, tmpfs)")
        raise OSError(err, os.strerror(err), str(b))


def start_build(root: Path, name: str) -> Build:
    """Make and lock ``root/.build-<name>-<random>`` (mode 0700)."""
    with _locked(root, fcntl.LOCK_SH):
        path = root / f"{BUILD_PREFIX}{name}-{os.urandom(4).hex()}"
        path.mkdir(mode=0o700)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            shutil.rmtree(path, ignore_errors=True)
            raise
    return Build(root, path, fd)


def remove_stale_builds(root: Path) -> int:
    """Remove the build directories of dead processes; return how many were removed."""
    if not root.is_dir():
        return 0
    removed = 0
    with _locked(root, fcntl.LOCK_EX):
        for path in sorted(root.iterdir()):
            if not path.name.startswith(BUILD_PREFIX) or path.is_symlink() or not path.is_dir():
                continue
            if _remove_if_stale(path):
                removed += 1
    if removed:
        fsync_dir(root)
    return removed


def _remove_if_stale(path: Path) -> bool:
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        shutil.rmtree(path, ignore_errors=True)  # never locked, or unlocked by a dead process
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live build
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        os.close(fd)
