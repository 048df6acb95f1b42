"""Shredding the raw input after ingest: best effort, and why it cannot be more.

:func:`shred` overwrites a file once with random bytes (same length, fsync)
and unlinks it. That CANNOT guarantee erasure: copy-on-write file systems
(btrfs, ZFS, APFS) and log-structured ones write the new bytes elsewhere
and leave the old blocks until reused; SSDs and SD cards remap writes (wear
levelling) and keep over-provisioned and retired blocks the OS cannot
address; snapshots, backups, replicas, editor swap and backup files, the
page cache and copies made before ingest are untouched. The real control is
never to hold the plaintext unencrypted at rest: receive and keep raw data
sealed (``sealtune seal``; scan and ingest read a sealed input in memory)
or on an encrypted volume, so that destroying a key (crypto-shredding)
erases every copy at once.

What this protects against: the raw file lingering under its name, readable
by anyone who can read the directory. What it does not: everything listed
above.
"""

from __future__ import annotations

import os
from pathlib import Path

from sealtune.outputs import fsync_dir

__all__ = ["shred"]


def shred(path: Path) -> int:
    """Overwrite ``path`` with random bytes (same length), fsync, unlink; return its size.

    Best effort only: see the module docstring for where this cannot erase.
    """
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        size = os.fstat(fd).st_size
        done = 0
        while done < size:
            done += os.pwrite(fd, os.urandom(min(1 << 20, size - done)), done)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    fsync_dir(path.parent)
    return size
