"""Outputs written through: the standard output, devices, FIFOs, sockets.

Private to :mod:`sealtune.outputs`. Nothing here creates, renames or
replaces a file: a character device or FIFO is opened for writing
(``O_NOCTTY``), a Unix stream socket is connected, the standard output is
used as it is. Plaintext is refused on a terminal unless allowed.

What this protects against: replacing a device node, FIFO or socket with a
regular file, and plaintext shown on a terminal by mistake (scrollback,
screen). What it does not: make the write atomic (a reader sees bytes as
they come, and what came before a failure), or know what the reader does
with them.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

from sealtune.errors import UsageError
from sealtune.outputs._files import closing_quietly_on_error

_TTY_HINT = "redirect it to a file or a pipe (> FILE, | less), or pass --force"


def _refuse_terminal(name: str) -> UsageError:
    return UsageError(f"{name} is a terminal: refusing to write plaintext to it",
                      hint=_TTY_HINT)


@contextmanager
def stdout_writer(terminal_ok: bool) -> Iterator[BinaryIO]:
    """The standard output's binary buffer (left open), after what was printed before."""
    if not terminal_ok and sys.stdout.isatty():
        raise _refuse_terminal("standard output")
    sys.stdout.flush()  # what was printed before comes first
    fh = cast(BinaryIO, getattr(sys.stdout, "buffer", sys.stdout))
    yield fh
    fh.flush()


@contextmanager
def stream_writer(path: Path, *, terminal_ok: bool) -> Iterator[BinaryIO]:
    """A character device or FIFO opened for writing: no temp file, no rename."""
    # O_NOCTTY: opening a terminal must not make it ours; a FIFO blocks here
    # until a reader opens it, which is what its reader expects.
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    if not terminal_ok and os.isatty(fd):
        os.close(fd)
        raise _refuse_terminal(str(path))
    with closing_quietly_on_error(os.fdopen(fd, "wb")) as fh:
        yield fh


@contextmanager
def socket_writer(path: Path, *, terminal_ok: bool) -> Iterator[BinaryIO]:
    """A Unix stream socket, connected; its write side is shut down at the end."""
    del terminal_ok  # a socket is never a terminal
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(os.fspath(path))
        with closing_quietly_on_error(cast(BinaryIO, sock.makefile("wb"))) as fh:
            yield fh
        sock.shutdown(socket.SHUT_WR)
