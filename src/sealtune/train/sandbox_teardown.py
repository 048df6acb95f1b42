"""Checking that a destroyed sandbox is gone, and making what it wrote safe to read.

:func:`namespace_members` finds live host processes still in the sandbox's pid
or mount namespace (identified by namespace inode, so a reused pid is not
mistaken for the sandbox); :class:`~sealtune.train.sandbox.Sandbox` uses it to
refuse to report a teardown as clean while anything survives.
:func:`sanitize_outputs` removes symlinks and special files from the output
directory and resets modes to ``0600``/``0700``, so that a sandbox running as
host uid 0 cannot leave a setuid binary or a link that redirects a later
reader.

What this protects against: a sandbox process that outlives its sandbox
unnoticed, and hostile file types or modes in the outputs. What it does not:
this is OS isolation, not a TEE; only processes whose ``/proc`` entries this
user may read are seen, a process that left both namespaces is not found, and
the *contents* of output files are not checked here (the job checks that they
are sealed).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Teardown:
    """What :meth:`Sandbox.destroy` verified."""

    processes_left: int
    namespaces_released: bool
    outputs_removed: int
    seconds: float


def _ns_inode(pid: int, ns: str) -> int | None:
    try:
        return int(os.readlink(f"/proc/{pid}/ns/{ns}").split("[")[1].rstrip("]"))
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def namespace_members(namespaces: Mapping[str, int], *, settle: float = 0.0) -> list[int]:
    """Live host pids in the sandbox's pid or mount namespace (of those we may inspect).

    Zombies do not count: they hold neither memory nor mounts. Retries for up
    to ``settle`` seconds while processes are still exiting.
    """
    wanted = [(k, namespaces[f"{k}-namespace"]) for k in ("pid", "mnt")
              if f"{k}-namespace" in namespaces]
    deadline = time.monotonic() + settle
    while True:
        found = [int(p) for p in os.listdir("/proc") if p.isdigit()
                 and any(_ns_inode(int(p), k) == v for k, v in wanted) and _alive(int(p))]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.01)


def sanitize_outputs(root: Path) -> int:
    """Remove links and special files from ``root``; make the rest private, no exec bits.

    The sandbox writes as its uid (host root when sealtune runs as root): it could
    otherwise leave a setuid binary, or a symlink that redirects a later reader.
    Returns the number of entries removed.
    """
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(path, 0o700)
            elif stat.S_ISREG(mode):
                os.chmod(path, 0o600)
            else:
                os.unlink(path)
                removed += 1
    return removed
