"""Workspace key rotation, retirement and destruction that never lose data silently.

:func:`rotate_workspace` makes a new version of a KEK current and re-wraps
(header only, :func:`~sealtune.keys.files.rewrap_file`) every sealed file the
workspace knows (:mod:`sealtune.keys.inventory`: datasets, dataset key files,
models, checkpoints, files sealed elsewhere by this workspace) plus those
under the directories given, then, if asked, retires the old versions with
:func:`retire_checked`, which refuses while any known file or running job
(:mod:`sealtune.keys.versions` leases) still depends on a version it would
remove, listing them, unless ``force`` (which warns and is recorded in the
ledger as ``key.unsafe_force_retire``). :func:`destroy_impact` lists, before
a key is destroyed, which files become unreadable and which another live KEK
can still open (so the user sees what is *not* shredded).

Crash safety: each re-wrap is crash-safe on its own (the inactive slot is
written, then the old one cleared), so a rotation killed midway leaves every
file openable under the old or the new version. The catalogue records the
rotation as in progress until its re-wrap pass completes; running
``rotate_workspace`` again resumes it (no further version) and finishes it.
Records (manifests, BOMs, model records) bind the content digest
(:mod:`sealtune.keys.content`), which a re-wrap does not change.

What this protects against: a rotation that leaves dataset manifests or
model records mismatched, a retirement that silently makes the workspace's
own files (or a running job's outputs) unreadable, a seal racing a retirement
(the whole pass, check and retire hold the version lock). What it does not:
files the workspace never saw (copies, backups, files sealed by another
workspace): name their directories with ``dirs``; and the header facts the
inventory reads are unauthenticated hints (a re-wrap authenticates each file).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sealtune.errors import KeyInUseError, SealtuneError, UsageError
from sealtune.keys.base import KeyInfo
from sealtune.keys.files import rewrap_file
from sealtune.keys.inventory import KnownFile, compact, known_files, remember
from sealtune.keys.remote import (
    prune_superseded,
    remote_blockers,
    remote_impact,
    rewrap_published,
)
from sealtune.keys.service import CATALOGUE
from sealtune.keys.versions import live_leases

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = [
    "DestroyImpact",
    "RotationReport",
    "destroy_impact",
    "retire_blockers",
    "retire_checked",
    "rotate_workspace",
]

_PENDING = "rotation"
#: Files listed in full in a refusal; the rest are counted.
_SHOWN = 20
FileHook = Callable[[Path], None]


@dataclass
class RotationReport:
    """What :func:`rotate_workspace` did.

    Attributes:
        key: the key after rotation (and retirement, if asked).
        resumed: True when an interrupted rotation was finished instead of a new version made.
        rewrapped: files re-wrapped under the current version.
        current: files that already were (left alone).
        other: files of the given directories not wrapped under this key.
        failed: ``(path, error class)`` of files that could not be re-wrapped.
        republished: published copies moved to a new generation (``collection/name@gN``).
        retired: whether old versions were retired.
        forced: what a forced retire left depending on the removed versions.
    """

    key: KeyInfo
    resumed: bool = False
    rewrapped: list[Path] = field(default_factory=list)
    current: int = 0
    other: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    retired: bool = False
    forced: list[str] = field(default_factory=list)


def _check_dirs(dirs: Sequence[Path]) -> list[Path]:
    for directory in dirs:
        if not directory.is_dir():
            raise UsageError(f"--rewrap {directory}: not a directory",
                             hint="name a directory that holds sealed files")
    return [d.absolute() for d in dirs]


def _start(ws: Workspace, name: str) -> tuple[KeyInfo, bool]:
    """Rotate ``name``, or resume its interrupted rotation (recorded in the catalogue)."""
    info = ws.keys.info(name)
    rec = ws.keyfile.get(CATALOGUE, name) or {}
    pending = rec.get(_PENDING)
    if info.state == "active" and isinstance(pending, dict) and (
            pending.get("version") == info.current):
        ws.audit("key.rotate", info.uri, details={"version": info.current, "resumed": True})
        return info, True
    info = ws.keys.rotate(name)
    with ws.keyfile.transaction() as doc:
        doc[CATALOGUE][name][_PENDING] = {"version": info.current}
    return info, False


def _finish(ws: Workspace, name: str) -> None:
    with ws.keyfile.transaction() as doc:
        doc[CATALOGUE][name].pop(_PENDING, None)


def _rewrap_pass(ws: Workspace, info: KeyInfo, files: list[KnownFile], report: RotationReport,
                 on_file: FileHook | None) -> None:
    for known in files:
        versions = known.versions_of(info.uri)
        if not versions:
            report.other += 1
        elif versions == {info.current} and not known.stale:
            report.current += 1
        else:
            try:
                rewrap_file(known.path, keys=ws.keys, key_name=info.name)
                report.rewrapped.append(known.path)
            except SealtuneError as exc:
                if known.path.exists():  # a checkpoint replaced meanwhile is not a failure
                    report.failed.append((known.path, type(exc).__name__))
        if on_file is not None:
            on_file(known.path)


def rotate_workspace(ws: Workspace, name: str, *, dirs: Sequence[Path] = (),
                     retire_old: bool = False, force: bool = False,
                     on_file: FileHook | None = None) -> RotationReport:
    """Rotate KEK ``name`` and re-wrap every known file (and those under ``dirs``).

    Args:
        ws: the workspace.
        name: the KEK.
        dirs: further directories whose sealed files are re-wrapped (links not followed).
        retire_old: afterwards, retire the versions below the new one (checked).
        force: retire even while files still depend on an old version (unsafe: warns,
            recorded as ``key.unsafe_force_retire``).
        on_file: called after each file is handled (progress; tests use it to interrupt).

    Raises:
        UsageError: a directory does not exist.
        KeyInUseError: ``retire_old`` without ``force`` while something still depends
            on an old version (nothing is retired; the re-wrapping done stays).
        KeyringError: the key is missing, destroyed or its backend unavailable.
    """
    given = _check_dirs(dirs)
    info, resumed = _start(ws, name)
    report = RotationReport(info, resumed)
    with ws.keys.version_lock.exclusive():
        files = known_files(ws.root, given=given)
        _rewrap_pass(ws, info, files, report, on_file)
        remember(ws.root, [f.path for f in files if f.origin == "given"])
        compact(ws.root)
        report.republished = rewrap_published(ws, name, current=info.current).republished
        if not report.failed:
            _finish(ws, name)
        if retire_old:
            report.forced = retire_checked(ws, name, below=info.current, dirs=given,
                                           force=force)
            report.retired = True
            report.key = ws.keys.info(name)
    return report


def retire_blockers(ws: Workspace, name: str, *, below: int,
                    dirs: Sequence[Path] = ()) -> list[str]:
    """What still depends on a version of ``name`` lower than ``below`` (one line each)."""
    uri = ws.keys.info(name).uri
    lines = []
    for known in known_files(ws.root, given=_check_dirs(dirs)):
        old = sorted(v for v in known.versions_of(uri) if v < below)
        if old:
            lines.append(f"{known.path} (wrapped under {uri} v{','.join(map(str, old))})")
    for lease in live_leases(ws.root):
        old_entries = [e for e in lease.entries
                       if e.rpartition("@")[0] == uri and int(e.rpartition("@")[2]) < below]
        if old_entries:
            lines.append(f"{lease.label} (running, pid {lease.pid}; will seal under "
                         f"{', '.join(old_entries)})")
    return lines + remote_blockers(ws, uri, below=below)


def retire_checked(ws: Workspace, name: str, *, below: int, dirs: Sequence[Path] = (),
                   force: bool = False) -> list[str]:
    """Retire versions of ``name`` below ``below`` unless something still depends on them.

    Returns:
        What a forced retire left depending on the removed versions (empty otherwise).

    Raises:
        KeyInUseError: something depends on them and ``force`` is False (listed).
    """
    with ws.keys.version_lock.exclusive():
        blockers = retire_blockers(ws, name, below=below, dirs=dirs)
        if blockers and not force:
            shown = "\n  ".join(blockers[:_SHOWN])
            more = f"\n  ... and {len(blockers) - _SHOWN} more" if len(blockers) > _SHOWN else ""
            raise KeyInUseError(
                f"not retiring versions below {below} of key {name!r}: "
                f"{len(blockers)} item(s) still depend on them:\n  {shown}{more}",
                hint=f"run 'sealtune keys rotate {name}' (add --rewrap DIR for files "
                     "elsewhere) to re-wrap them, wait for running jobs, or repeat with "
                     "--force to make them unreadable")
        if blockers:
            message = (f"forced retire of key {name!r} below v{below}: {len(blockers)} "
                       "item(s) depending on the retired versions become unreadable")
            warnings.warn(message, UserWarning, stacklevel=2)
            ws.audit("key.unsafe_force_retire", f"key/{name}",
                     details={"below": below, "dependents": len(blockers)})
        ws.keys.retire(name, below=below)
        kept = prune_superseded(ws)
    if kept:
        warnings.warn(f"{len(kept)} superseded published object(s) stay under Object Lock, "
                      "wrapped under retired key versions (no longer openable): "
                      + ", ".join(kept[:_SHOWN]), UserWarning, stacklevel=2)
    return blockers


@dataclass(frozen=True)
class DestroyImpact:
    """What destroying a key does to the files the workspace knows.

    Attributes:
        shredded: files that no live key other than this one opens.
        still_open: ``(path, other live KEKs)`` of files another key still opens.
        remote_shredded: published copies (``collection/name``) no longer openable.
        remote_still_open: published copies another live key still opens.
    """

    shredded: tuple[Path, ...]
    still_open: tuple[tuple[Path, tuple[str, ...]], ...]
    remote_shredded: tuple[str, ...] = ()
    remote_still_open: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _live_uris(ws: Workspace) -> dict[str, set[int]]:
    """Live KEK URIs and their versions; a key whose backend cannot answer counts as not live."""
    live: dict[str, set[int]] = {}
    for name in sorted(ws.keyfile.items(CATALOGUE)):
        try:
            info = ws.keys.info(name)
        except SealtuneError:
            continue
        if info.state == "active":
            live[info.uri] = set(info.versions)
    return live


def destroy_impact(ws: Workspace, name: str, *, dirs: Sequence[Path] = ()) -> DestroyImpact:
    """Which known files destroying ``name`` shreds, and which stay readable through another KEK."""
    uri = ws.keys.info(name).uri
    live = _live_uris(ws)
    shredded, still_open = [], []
    for known in known_files(ws.root, given=_check_dirs(dirs)):
        if not known.versions_of(uri):
            continue
        others = sorted({e.kek_uri for e in known.entries if e.kek_uri != uri
                         and e.version in live.get(e.kek_uri, set())})
        if others:
            still_open.append((known.path, tuple(others)))
        else:
            shredded.append(known.path)
    remote_gone, remote_open = remote_impact(ws, uri, live)
    return DestroyImpact(tuple(shredded), tuple(still_open), tuple(remote_gone),
                         tuple(remote_open))


def destroy_key(ws: Workspace, name: str, *, dirs: Sequence[Path] = ()) -> DestroyImpact:
    """Destroy every version of ``name`` (crypto-shredding); returns what that did.

    The impact is worked out first, so the caller can say which known files
    are now unrecoverable and which another live key still opens.
    """
    impact = destroy_impact(ws, name, dirs=dirs)
    ws.keys.destroy(name)
    return impact
