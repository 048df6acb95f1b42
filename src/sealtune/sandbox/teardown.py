"""Checking that a destroyed sandbox is gone, and making what it wrote safe to read.

:func:`namespace_members` finds live host processes still in the sandbox's pid
or mount namespace (identified by namespace inode, so a reused pid is not
mistaken for the sandbox); :class:`~sealtune.sandbox.process.Sandbox` uses it to
refuse to report a teardown as clean while anything survives.
:func:`sanitize_outputs` removes from the output directory every symlink,
special file, and, when the spec says what the entry may write, every file or
directory it did not expect (without following links: a removed directory's
tree is unlinked through file descriptors), and resets the modes of what stays
to ``0600``/``0700``, so that a sandbox running as host uid 0 cannot leave a
setuid binary, a link that redirects a later reader, or files nobody asked for.

What this protects against: a sandbox process that outlives its sandbox
unnoticed, and hostile file types, modes or stray files in the outputs. What
it does not: this is OS isolation, not a TEE; only processes whose ``/proc``
entries this user may read are seen, a process that left both namespaces is not
found, and the *contents* of output files are not checked here (the job checks
that they are sealed). Names of removed entries are reported as the sandbox
chose them, within a safe alphabet (others as a digest): a sandbox can still
encode a few bytes in them, as it can in its event fields.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: How a removed entry's name is reported: as is within this alphabet, else a digest.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.,:/+=-]{1,128}$")
MAX_REPORTED = 32


@dataclass(frozen=True)
class Teardown:
    """What :meth:`Sandbox.destroy` verified."""

    processes_left: int
    namespaces_released: bool
    outputs_removed: int
    seconds: float
    #: What was removed from the outputs (the first :data:`MAX_REPORTED`), by relative
    #: name as :func:`reported_name` reports it.
    unexpected: tuple[str, ...] = ()


def ns_inode(pid: int, ns: str) -> int | None:
    """The inode of ``pid``'s namespace ``ns`` (``pid``, ``mnt``...), or None if it is gone."""
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
                 and any(ns_inode(int(p), k) == v for k, v in wanted) and _alive(int(p))]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.01)


def reported_name(rel: str) -> str:
    """``rel`` if it is short and in :data:`SAFE_NAME`'s alphabet, else ``sha256:<16 hex>``."""
    if SAFE_NAME.fullmatch(rel):
        return rel
    return "sha256:" + hashlib.sha256(rel.encode(errors="surrogateescape")).hexdigest()[:16]


def _expected(rel: tuple[str, ...], patterns: Sequence[tuple[str, ...]], *, is_dir: bool) -> bool:
    """A file matching a whole pattern, or a directory matching a pattern's leading parts."""
    return any((len(rel) < len(pattern) if is_dir else len(rel) == len(pattern))
               and all(fnmatch.fnmatchcase(p, q) for p, q in zip(rel, pattern, strict=False))
               for pattern in patterns)


def _remove(path: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        # rmtree unlinks through directory fds and never follows a symlink in the tree
        # (true on Linux; refuse rather than risk following one elsewhere).
        if not shutil.rmtree.avoids_symlink_attacks:
            raise OSError(f"cannot remove {path} safely on this platform")
        shutil.rmtree(path)
    else:
        os.unlink(path)


def sanitize_outputs(root: Path, expected: Sequence[str] | None = None) -> list[str]:
    """Remove links, special files and the unexpected from ``root``; make the rest private.

    The sandbox writes as its uid (host root when sealtune runs as root): it could
    otherwise leave a setuid binary, a symlink that redirects a later reader, or
    files and directories its job does not produce.

    Args:
        root: the output directory (the sandbox must be gone).
        expected: the spec's ``outputs`` patterns; ``None`` keeps every regular file
            and directory.

    Returns:
        The relative paths of what was removed (a removed directory counts once).
    """
    patterns = None if expected is None else [tuple(p.split("/")) for p in expected]
    removed: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):  # never descends into a symlink
        for name in sorted([*dirnames, *filenames]):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            mode = os.lstat(path).st_mode
            is_dir, is_reg = stat.S_ISDIR(mode), stat.S_ISREG(mode)
            keep = (is_dir or is_reg) and (patterns is None or _expected(
                tuple(rel.split(os.sep)), patterns, is_dir=is_dir))
            if keep:
                os.chmod(path, 0o700 if is_dir else 0o600)
                continue
            _remove(path, mode)
            removed.append(rel)
            if name in dirnames:  # a removed directory, or a link os.walk listed as one
                dirnames.remove(name)
    return removed
