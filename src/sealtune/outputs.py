"""Where every command's output goes: files, devices, pipes, sockets, ``-``.

:func:`open_output` is the one way sealtune writes a file a user names (and
the files it keeps itself). It looks at what is at the path first:

* nothing, or a regular file (symbolic links followed): an atomic,
  crash-safe write. The bytes go to a temp file in the same directory, which
  is flushed, fsynced, moved into place and the directory fsynced only when
  the caller's block completes; a failure inside the block removes it. On
  Linux the temp file is an unnamed ``O_TMPFILE`` inode, linked in only once
  complete, so even a process killed outright (SIGKILL, power loss) midway
  leaves no partial output under any name; elsewhere it is a named
  ``.<name>.*.part`` file (mode 0600) that such a kill can leave behind.
  A symbolic link stays a link: the file it points to is replaced.
* a character device, a FIFO or a Unix stream socket: opened (connected) and
  written through, with no temp file and no rename, so ``/dev/null``, a
  terminal, a named pipe or a socket is never replaced by a regular file.
  Such a write streams: a reader sees bytes as they are written, and an
  error midway leaves it with what came before. Callers that need all or
  nothing pass ``atomic="require"`` and such targets are refused.
* ``-``: the standard output (and for :func:`open_input`, the standard input).
* a directory, a block device or a dangling symbolic link: refused
  (:class:`~sealtune.errors.UsageError`, exit status 2).

Plaintext (``plaintext=True``) is refused on a terminal unless the caller
allows it (``--force`` on the command line): a terminal keeps it in
scrollback and on screen.

What this protects against: replacing a device node, FIFO or socket (the
``/dev/null`` that every other user of the machine writes to) with a regular
file holding the output; half-written files under the final name after an
error or a crash; plaintext shown on a terminal by mistake. What it does not:
protect the output once written (its mode is 0600 unless the caller says
otherwise; what a reader of a stream does with it is its business), make a
stream output atomic, keep the replaced file's mode or owner, or stop a
concurrent writer from swapping the path between the check and the write.

This module sits below ``keys``: it imports only the standard library and
:mod:`sealtune.errors`.
"""

from __future__ import annotations

import ctypes
import io
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TextIO, cast

from sealtune.errors import SealtuneError, UsageError

__all__ = [
    "STDIO",
    "Output",
    "fsync_dir",
    "is_stdio",
    "open_input",
    "open_output",
    "open_text_input",
    "open_text_output",
    "resolve_output",
    "write_atomic",
]

#: The name that means the standard output (or, as an input, the standard input).
STDIO = "-"

Target = str | os.PathLike[str]
Atomic = Literal["prefer", "require"]
Kind = Literal["file", "stream", "socket", "stdout"]

_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
_TTY_HINT = "redirect it to a file or a pipe (> FILE, | less), or pass --force"


@dataclass(frozen=True)
class Output:
    """An output target, looked at once.

    Attributes:
        name: for messages and the audit log: the path as given, or
            ``<stdout>``.
        path: the path to write (symbolic links resolved for a regular
            file); ``None`` for the standard output.
        kind: ``file`` (absent or regular: atomic write), ``stream`` (a
            character device or FIFO: written through), ``socket`` (a Unix
            stream socket: connected and written through) or ``stdout``.
    """

    name: str
    path: Path | None
    kind: Kind

    @property
    def atomic(self) -> bool:
        """True when the output appears all at once (temp file and rename)."""
        return self.kind == "file"


def is_stdio(target: Target) -> bool:
    """True when ``target`` is ``-`` (name a file called ``-`` as ``./-``)."""
    return os.fspath(target) == STDIO


def _what(mode: int) -> str:
    kinds = ((stat.S_ISCHR, "character device"), (stat.S_ISFIFO, "FIFO"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _os_error(name: object, exc: OSError) -> SealtuneError:
    """An OS error as a SealtuneError naming the file (never a raw exception)."""
    if isinstance(exc, BrokenPipeError):
        return SealtuneError(f"{name}: the reader closed it before the end",
                             hint="the output is incomplete: read it to the end (fine to "
                             "ignore if you stopped early on purpose, as with | head)")
    reason = exc.strerror or type(exc).__name__
    return SealtuneError(f"{exc.filename or name}: {reason}",
                         hint="check the path, permissions and free space")


def _missing(path: Path) -> Output:
    if path.is_symlink():
        raise UsageError(f"{path} is a symbolic link to nothing",
                         hint="remove the link or point it at a file")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} is not a directory", hint="create it first")
    return Output(str(path), path, "file")


def resolve_output(target: Target, *, atomic: Atomic = "prefer") -> Output:
    """Look at what is at ``target`` and decide how to write it.

    Args:
        target: a path, or ``-`` for the standard output.
        atomic: ``prefer`` writes devices, FIFOs and sockets through;
            ``require`` refuses anything but a regular (or absent) file.

    Raises:
        UsageError: a directory, a block device, a dangling link, a missing
            parent directory, or a non-regular target under ``require``.
    """
    if is_stdio(target):
        if atomic == "require":
            raise UsageError("this output cannot be the standard output",
                             hint="name a regular file")
        return Output("<stdout>", None, "stdout")
    path = Path(target)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _missing(path)
    except OSError as exc:
        raise _os_error(path, exc) from None
    if stat.S_ISREG(st.st_mode):
        return Output(str(path), Path(os.path.realpath(path)), "file")
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a directory", hint="name a file inside it")
    what = _what(st.st_mode)
    if stat.S_ISBLK(st.st_mode) or what == "special file":
        raise UsageError(f"{path} is a {what}; sealtune does not write onto it",
                         hint="write to a regular file, or to '-' and pipe it on")
    if atomic == "require":
        raise UsageError(f"{path} is a {what}; this output is written atomically and must be "
                         "a regular file", hint="name a regular file")
    return Output(str(path), path, "socket" if stat.S_ISSOCK(st.st_mode) else "stream")


@contextmanager
def open_output(target: Target | Output, *, atomic: Atomic = "prefer", plaintext: bool = False,
                allow_terminal: bool = False, overwrite: bool = True,
                mode: int = 0o600) -> Iterator[BinaryIO]:
    """Open an output for binary writing; see the module docstring for the rules.

    Args:
        target: a path, ``-``, or an :class:`Output` from :func:`resolve_output`.
        atomic: see :func:`resolve_output`.
        plaintext: the bytes are plaintext: refuse a terminal unless
            ``allow_terminal``.
        allow_terminal: write plaintext to a terminal all the same.
        overwrite: replace an existing regular file (else a UsageError);
            devices, FIFOs and sockets are written, not replaced.
        mode: permission bits of a new or replaced file.

    Raises:
        UsageError: see :func:`resolve_output`; an existing file without
            ``overwrite``; plaintext on a terminal.
        SealtuneError: an OS error, naming the file.
    """
    out = target if isinstance(target, Output) else resolve_output(target, atomic=atomic)
    terminal_ok = allow_terminal or not plaintext
    try:
        if out.kind == "stdout":
            with _stdout(terminal_ok) as fh:
                yield fh
        elif out.kind == "file":
            assert out.path is not None
            with _atomic(out.path, overwrite=overwrite, mode=mode) as fh:
                yield fh
        else:
            assert out.path is not None
            opener = _socket if out.kind == "socket" else _stream
            with opener(out.path, terminal_ok=terminal_ok) as fh:
                yield fh
    except OSError as exc:
        raise _os_error(out.name, exc) from None


@contextmanager
def open_text_output(target: Target | Output, *, encoding: str = "utf-8",
                     newline: str | None = None, atomic: Atomic = "prefer",
                     plaintext: bool = False, allow_terminal: bool = False,
                     overwrite: bool = True, mode: int = 0o600) -> Iterator[TextIO]:
    """:func:`open_output` for text (same arguments, plus ``encoding`` and ``newline``)."""
    with open_output(target, atomic=atomic, plaintext=plaintext, allow_terminal=allow_terminal,
                     overwrite=overwrite, mode=mode) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding,
                                newline=newline)
        try:
            yield text
            text.flush()
        finally:
            with suppress(ValueError, OSError):  # never close the binary file under us
                text.detach()


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically (a regular file only).

    Raises:
        UsageError: ``path`` is not a regular file or absent (see :func:`resolve_output`).
        SealtuneError: an OS error, naming the file.
    """
    with open_output(path, atomic="require", mode=mode) as fh:
        fh.write(data)


@contextmanager
def open_input(target: Target) -> Iterator[BinaryIO]:
    """Open an input for binary reading: a file, a device, a FIFO, or ``-`` (standard input).

    Raises:
        UsageError: it does not exist or is a directory.
        SealtuneError: another OS error, naming the file.
    """
    if is_stdio(target):
        yield cast(BinaryIO, getattr(sys.stdin, "buffer", sys.stdin))
        return
    path = Path(target)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"{path} is not a readable file (not found)",
                         hint="check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory", hint="name a file inside it") from None
    except OSError as exc:
        raise _os_error(path, exc) from None
    with fh:
        yield fh


@contextmanager
def open_text_input(target: Target, *, encoding: str = "utf-8",
                    newline: str | None = None) -> Iterator[TextIO]:
    """:func:`open_input` for text (``-``: the standard input, left open)."""
    with open_input(target) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, newline=newline)
        try:
            yield text
        finally:
            with suppress(ValueError, OSError):  # never close the binary file under us
                text.detach()


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse_terminal(name: str) -> UsageError:
    return UsageError(f"{name} is a terminal: refusing to write plaintext to it",
                      hint=_TTY_HINT)


@contextmanager
def _stdout(terminal_ok: bool) -> Iterator[BinaryIO]:
    if not terminal_ok and sys.stdout.isatty():
        raise _refuse_terminal("standard output")
    sys.stdout.flush()  # what was printed before comes first
    fh = cast(BinaryIO, getattr(sys.stdout, "buffer", sys.stdout))
    yield fh
    fh.flush()


@contextmanager
def _stream(path: Path, *, terminal_ok: bool) -> Iterator[BinaryIO]:
    # O_NOCTTY: opening a terminal must not make it ours; a FIFO blocks here
    # until a reader opens it, which is what its reader expects.
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    if not terminal_ok and os.isatty(fd):
        os.close(fd)
        raise _refuse_terminal(str(path))
    with os.fdopen(fd, "wb") as fh:
        yield fh


@contextmanager
def _socket(path: Path, *, terminal_ok: bool) -> Iterator[BinaryIO]:
    del terminal_ok  # a socket is never a terminal
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(os.fspath(path))
        with sock.makefile("wb") as fh:
            yield cast(BinaryIO, fh)
        sock.shutdown(socket.SHUT_WR)


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
def _atomic(dst: Path, *, overwrite: bool, mode: int) -> Iterator[BinaryIO]:
    if not overwrite and os.path.lexists(dst):
        raise _exists(dst)
    directory = dst.parent
    fd = _anonymous_fd(directory)
    tmp: str | None = None
    if fd is None:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{dst.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
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
