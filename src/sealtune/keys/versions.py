"""Key versions in use: the lock that orders sealing against retiring, and job leases.

A seal wraps its data key under the current KEK version when it *starts* and
publishes the file when it *ends*. If the version is retired or destroyed in
between, the published file opens with nothing. Two mechanisms close that gap:

* The **version lock** (``<workspace>/key-versions.lock``, ``flock``):
  retiring and destroying hold it exclusively (:meth:`VersionLock.exclusive`,
  held by a whole rotation across its re-wrap pass, its check and the
  retire); publishing a sealed file holds it shared (:class:`CommitGuard`)
  from the moment it checks that every version it wrapped under is still live
  until the file has its final name. So either the file is published first,
  and the rotation's re-wrap pass (which runs after it under the exclusive
  lock) finds and re-wraps it, or the retire comes first and the seal fails
  with nothing under the final name.
* **Leases** (``<workspace>/key-leases/<id>.json``): an operation that holds
  wrapped keys for a long time before it writes files (a training job seals
  its checkpoints and model inside the sandbox, with keys wrapped at start)
  records which KEK versions it depends on while it runs; a retire refuses
  while a live lease (its process still running) depends on a version it
  would remove. A lease left by a killed process is ignored.

What this protects against: a file sealed (or a model installed) under a KEK
version that a concurrent rotation has just retired, reported as success.
What it does not: processes that do not take the lock (another tool writing
sealed files directly), files on another host, or clock-free guarantees
across NFS (``flock`` is local to the host). A lease is a plain JSON file:
whoever can write the workspace can remove it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import KeyDestroyedError, KeyNotFoundError
from sealtune.outputs import write_atomic

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

__all__ = ["LEASES", "LOCK_FILE", "CommitGuard", "Lease", "VersionLock", "live_leases"]

LOCK_FILE = "key-versions.lock"
LEASES = "key-leases"


class VersionLock:
    """The workspace's key-version lock; exclusive holds nest within one thread.

    Args:
        root: the workspace directory.
    """

    def __init__(self, root: Path) -> None:
        self._path = root / LOCK_FILE
        self._local = threading.local()

    @contextlib.contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        # A fresh open file description per hold: flock conflicts between two
        # descriptions even within one process, so threads serialise too.
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock exclusively (retire, destroy, a rotation); re-entrant per thread."""
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        with self._flock(fcntl.LOCK_EX):
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock shared (publishing a file); free if this thread holds it exclusively."""
        if getattr(self._local, "depth", 0):
            yield
            return
        with self._flock(fcntl.LOCK_SH):
            yield


def _entries(wrapped: Iterable[Any]) -> list[tuple[str, int]]:
    """``(kek_uri, version)`` of WrappedKey / KeyEntry objects or ``uri@version`` strings."""
    out = []
    for item in wrapped:
        if isinstance(item, str):
            uri, _, version = item.rpartition("@")
            out.append((uri, int(version)))
        else:
            out.append((str(item.kek_uri), int(item.version)))
    return out


def check_live(keys: KeyService, wrapped: Iterable[Any], *, what: str) -> None:
    """Raise ``KeyDestroyedError`` unless every ``(KEK, version)`` can still unwrap.

    Args:
        keys: the workspace's key service.
        wrapped: the entries a file is (or will be) wrapped under.
        what: the file or output, for the message.
    """
    for uri, version in _entries(wrapped):
        name = uri.split(":", 1)[1]
        try:
            info = keys.info(name)
        except KeyNotFoundError:
            info = None
        if info is None or info.uri != uri or info.state != "active" or (
                version not in info.versions):
            raise KeyDestroyedError(
                f"{what}: version {version} of key {uri} was retired or destroyed while it "
                "was being sealed; nothing was published under it",
                hint="seal it again: it will be wrapped under the key's current version")


class CommitGuard:
    """Publish a sealed file only while the versions it is wrapped under are live.

    Enter it before the block that writes and renames the file; call
    :meth:`check` last thing in that block, before the rename: it takes the
    version lock shared (held until the guard exits, after the rename) and
    raises if a version was retired or destroyed meanwhile.
    """

    def __init__(self, keys: KeyService, wrapped: Iterable[Any], *, what: str) -> None:
        self._keys, self._wrapped, self._what = keys, list(wrapped), what
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> CommitGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def check(self) -> None:
        """Take the lock shared and check the versions (raises ``KeyDestroyedError``)."""
        self._stack.enter_context(self._keys.version_lock.shared())
        check_live(self._keys, self._wrapped, what=self._what)


@dataclass(frozen=True)
class Lease:
    """A running operation's dependence on KEK versions (no key material).

    Attributes:
        label: what holds it (e.g. ``job job-...``).
        pid: the process that holds it.
        entries: ``uri@version`` of each wrapped key it will seal under.
    """

    label: str
    pid: int
    entries: tuple[str, ...]


def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        return None


@contextlib.contextmanager
def lease(root: Path, label: str, entries: Iterable[Any]) -> Iterator[None]:
    """Record, while the block runs, that this process will seal under ``entries``."""
    directory = root / LEASES
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{secrets.token_hex(8)}.json"
    record = {"label": label, "pid": os.getpid(), "start": _proc_start(os.getpid()),
              "entries": [f"{uri}@{version}" for uri, version in _entries(entries)]}
    write_atomic(path, json.dumps(record).encode("utf-8"))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def live_leases(root: Path) -> list[Lease]:
    """The leases whose process is still running (stale ones are skipped)."""
    directory = root / LEASES
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            rec = json.loads(path.read_text("utf-8"))
            pid, start = int(rec["pid"]), rec["start"]
            entries = tuple(str(e) for e in rec["entries"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if start is not None and _proc_start(pid) == start:
            found.append(Lease(str(rec.get("label", path.stem)), pid, entries))
    return found
