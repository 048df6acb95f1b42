"""The bundle's file layout, and reading and writing it as a directory or a tar.

A bundle is a set of files under fixed names (:func:`allowed`)::

    manifest.json                 DSSE-signed list of every other file and its SHA-256
    statements/<step>.dsse.json   one signed in-toto statement per step
    bom/<dataset>.cdx.json        the dataset ML-BOM (CycloneDX)
    training/<job>.json           the training record (figures and digests)
    gate/<assessment>.dsse.json   the release gate's signed report (a DSSE envelope)
    ledger/...                    see sealtune.evidence.ledger_proofs.PATTERNS
    keys/evidence.pub             the evidence public key (PEM), for convenience only
    keys/ledger.vkey              the ledger verifier key string, for convenience only

As a tar, the same files in byte order of their names, each a USTAR regular
file with mode 0644, owner 0/0 without names and mtime 0, padded to whole
10240-byte records: :func:`render_tar` is deterministic, and :func:`read_tar`
accepts only the exact bytes :func:`render_tar` makes of what it read.

What this protects against: links, devices, absolute or ``..`` paths and
duplicate names in a bundle (refused before anything is read or written), a
tar that means something else to another reader (only the canonical bytes
pass), unbounded input (files, sizes and depth are capped). What it does not:
authenticate anything (the signed manifest does that).
"""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
from collections.abc import Mapping
from pathlib import Path

from sealtune.errors import IntegrityError, UsageError
from sealtune.evidence import ledger_proofs

MANIFEST = "manifest.json"
EVIDENCE_KEY = "keys/evidence.pub"
LEDGER_KEY = "keys/ledger.vkey"
MAX_FILES = 100_000
MAX_FILE = 64 << 20
MAX_TOTAL = 256 << 20
_RECORD = 10240
_STEP = r"[a-z][a-z0-9_-]{0,63}"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
STATEMENT = re.compile(rf"statements/({_STEP})\.dsse\.json")
BOM = re.compile(rf"bom/({_NAME})\.cdx\.json")
TRAINING = re.compile(rf"training/({_NAME})\.json")
GATE = re.compile(rf"gate/({_NAME})\.dsse\.json")
_PATTERNS = (re.compile(re.escape(MANIFEST)), re.compile(re.escape(EVIDENCE_KEY)),
             re.compile(re.escape(LEDGER_KEY)), STATEMENT, BOM, TRAINING, GATE,
             *ledger_proofs.PATTERNS)
_DIRS = frozenset({"statements", "bom", "training", "gate", "ledger", "ledger/proofs",
                   "keys"})
STEP_NAME = re.compile(_STEP)


def allowed(name: str) -> bool:
    """Whether ``name`` is a file name the bundle layout has."""
    return any(p.fullmatch(name) for p in _PATTERNS)


def check_files(files: Mapping[str, bytes]) -> None:
    """Refuse a file set with a name outside the layout, or over the size caps.

    Raises:
        UsageError: naming the offending file.
    """
    total = 0
    for name, data in files.items():
        if not allowed(name):
            raise UsageError(f"{name!r} is not a bundle file name")
        total += len(data)
    if len(files) > MAX_FILES or total > MAX_TOTAL:
        raise UsageError(f"a bundle holds at most {MAX_FILES} files and {MAX_TOTAL} bytes")


def render_tar(files: Mapping[str, bytes]) -> bytes:
    """The deterministic tar of ``files`` (see the module docstring)."""
    out = io.BytesIO()
    for name in sorted(files, key=lambda n: n.encode("utf-8")):
        data = files[name]
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        out.write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
        out.write(data)
        out.write(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    out.write(b"\0" * (-out.tell() % _RECORD))
    return out.getvalue()


def read_tar(data: bytes, *, what: str) -> dict[str, bytes]:
    """Read a bundle tar; only the canonical bytes of its contents are accepted.

    Raises:
        IntegrityError: not a tar, a member that is not a regular file with an
            allowed name, a duplicate, or bytes that differ from :func:`render_tar`.
    """
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if (not member.isreg() or not allowed(member.name) or member.name in files
                        or len(files) >= MAX_FILES):
                    raise IntegrityError(f"{what}: member {member.name!r} is not an allowed "
                                         "regular file, or is repeated")
                fh = tar.extractfile(member)
                assert fh is not None  # a regular member always has a file object
                files[member.name] = fh.read()
    except (tarfile.TarError, EOFError, OSError, UnicodeError, ValueError):
        raise IntegrityError(f"{what}: not a readable tar") from None
    if render_tar(files) != data:
        raise IntegrityError(f"{what}: not a canonical bundle tar (headers, padding or "
                             "order differ from what sealtune writes)")
    return files


def _read_regular(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise IntegrityError(f"{path} is not a regular file")
        data = fh.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise IntegrityError(f"{path} is larger than {MAX_FILE} bytes")
    return data


def read_dir(root: Path) -> dict[str, bytes]:
    """Read a bundle directory: regular files in the layout's folders only, never links.

    Raises:
        IntegrityError: a link, a special file, an unexpected folder, or over the caps.
    """
    files: dict[str, bytes] = {}
    total = 0
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(root / rel if rel else root) as it:
            for entry in it:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False) and name in _DIRS:
                    pending.append(name)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    raise IntegrityError(f"{root}: {name!r} is a link, a special file or an "
                                         "unexpected folder")
                if len(files) >= MAX_FILES:
                    raise IntegrityError(f"{root}: more than {MAX_FILES} files")
                files[name] = _read_regular(root / name)
                total += len(files[name])
                if total > MAX_TOTAL:
                    raise IntegrityError(f"{root}: more than {MAX_TOTAL} bytes")
    return files


def read_bundle(path: Path) -> tuple[dict[str, bytes], str]:
    """Read a bundle directory or tar; returns its files and ``directory`` or ``tar``.

    Raises:
        UsageError: nothing there.
        IntegrityError: see :func:`read_dir` and :func:`read_tar`.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such bundle", hint="name a bundle directory or .tar") \
            from None
    if stat.S_ISDIR(st.st_mode):
        return read_dir(path), "directory"
    if stat.S_ISREG(st.st_mode):
        if st.st_size > MAX_TOTAL + MAX_FILES * 1024:
            raise IntegrityError(f"{path} is too large for a bundle")
        return read_tar(_read_regular_any(path), what=str(path)), "tar"
    raise IntegrityError(f"{path} is neither a directory nor a regular file")


def _read_regular_any(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(MAX_TOTAL + MAX_FILES * 1024 + 1)
