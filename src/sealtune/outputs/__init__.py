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

Layout: this package's ``__init__`` is the public API (classify a target,
open an output or an input); the atomic file write lives in
:mod:`sealtune.outputs._files` and the written-through targets in
:mod:`sealtune.outputs._through`. It sits below ``keys``: it imports only
the standard library and :mod:`sealtune.errors`.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TextIO, cast

from sealtune.errors import SealtuneError, UsageError
from sealtune.outputs._files import atomic_file, fsync_dir
from sealtune.outputs._full import disk_full, writing
from sealtune.outputs._through import socket_writer, stdout_writer, stream_writer

__all__ = [
    "STDIO",
    "Output",
    "Target",
    "disk_full",
    "fsync_dir",
    "is_stdio",
    "open_input",
    "open_output",
    "open_text_input",
    "open_text_output",
    "resolve_output",
    "write_atomic",
    "writing",
]

#: The name that means the standard output (or, as an input, the standard input).
STDIO = "-"

Target = str | os.PathLike[str]
Atomic = Literal["prefer", "require"]
Kind = Literal["file", "stream", "socket", "stdout"]


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
    full = disk_full(exc, exc.filename or name)
    if full is not None:
        return full
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
        atomic: see :func:`resolve_output` (not used for an :class:`Output`:
            that was decided when it was resolved).
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
    inside = False  # an OS error of the caller's own (reading its input) is not ours to name
    try:
        with _opener(out, terminal_ok=terminal_ok, overwrite=overwrite, mode=mode) as fh:
            inside = True
            yield cast(BinaryIO, _NamedWriter(fh, out.name))
            inside = False
    except OSError as exc:
        if inside:
            raise
        raise _os_error(out.name, exc) from None


def _opener(out: Output, *, terminal_ok: bool, overwrite: bool,
            mode: int) -> AbstractContextManager[BinaryIO]:
    if out.kind == "stdout":
        return stdout_writer(terminal_ok)
    assert out.path is not None
    if out.kind == "file":
        return atomic_file(out.path, overwrite=overwrite, mode=mode)
    opener = socket_writer if out.kind == "socket" else stream_writer
    return opener(out.path, terminal_ok=terminal_ok)


class _NamedWriter:
    """What the caller writes to: an OS error while writing names the output.

    A writable binary file as far as sealtune's writers (and ``TextIOWrapper``)
    go: ``write``, ``flush``, ``fileno``. Closing is the opener's business.
    """

    def __init__(self, inner: BinaryIO, name: str) -> None:
        self._inner = inner
        self._name = name

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._inner.fileno()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self._inner.write(data)
        except OSError as exc:
            raise _os_error(self._name, exc) from None

    def flush(self) -> None:
        try:
            self._inner.flush()
        except OSError as exc:
            raise _os_error(self._name, exc) from None


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
