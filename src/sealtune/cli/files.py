"""``sealtune seal``, ``sealtune unseal`` and ``sealtune verify-file``.

``-`` means the standard input or output; a device, FIFO or socket is
written through, never replaced (see :mod:`sealtune.outputs`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import console, err_console, open_workspace
from sealtune.keys import open_file, seal_file, verify_file
from sealtune.outputs import is_stdio

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]

_UNSEAL_OUT = (
    "Plaintext output: a file (replaced atomically), or '-', a FIFO or a device "
    "(written through, never replaced)."
)
_FORCE = "Write plaintext even when the output is a terminal (recorded in the audit log)."


def seal(
    src: Annotated[Path, typer.Argument(help="Plaintext file to seal ('-': standard input).")],
    dst: Annotated[Path, typer.Argument(
        help="Sealed output: a file (replaced atomically), '-', a FIFO or a device.")],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="KEK name; repeat to let several keys open the file."),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Seal a file: fresh data key, streaming AEAD, data key wrapped by each --key."""
    ws = open_workspace(home)
    try:
        names = key or [ws.config.default_key]
        result = seal_file(src, dst, keys=ws.keys, key_names=names)
        (err_console if is_stdio(dst) else console).print(
            f"sealed {src} -> {result.path} ({result.plaintext_size} bytes, "
            f"keys: {', '.join(names)})"
        )
    finally:
        ws.close()


def unseal(
    src: Annotated[Path, typer.Argument(help="Sealed file ('-': standard input).")],
    dst: Annotated[Path, typer.Argument(help=_UNSEAL_OUT)],
    force: Annotated[bool, typer.Option("--force", help=_FORCE)] = False,
    home: HomeOpt = None,
) -> None:
    """Open a sealed file; nothing is written unless the whole file authenticates.

    A regular file appears only once complete. '-', a FIFO or a device gets
    the plaintext after a first pass authenticated every segment; if the
    sealed file is changed between the two passes, the reader may get a true
    but incomplete prefix and the exit status is 3. To check that a file
    opens without writing plaintext anywhere, use 'sealtune verify-file'.
    """
    ws = open_workspace(home)
    try:
        if force and is_stdio(dst) and sys.stdout.isatty():
            err_console.print("[yellow]warning:[/] --force: writing plaintext to the terminal")
        result = open_file(src, dst, keys=ws.keys, allow_terminal=force)
        (err_console if is_stdio(dst) else console).print(
            f"unsealed {src} -> {result.path} ({result.plaintext_size} bytes)"
        )
    finally:
        ws.close()


def verify_file_command(
    src: Annotated[Path, typer.Argument(help="Sealed file ('-': standard input).")],
    home: HomeOpt = None,
) -> None:
    """Authenticate every segment of a sealed file and write nothing (exit 3 if it fails)."""
    ws = open_workspace(home)
    try:
        result = verify_file(src, keys=ws.keys)
    finally:
        ws.close()
    used = result.unwrapped_by
    console.print(f"{result.path}: authentic ({result.plaintext_size} bytes, "
                  f"opened with {used.kek_uri}@{used.version})")
    if result.warning:
        err_console.print(f"[yellow]warning:[/] {result.warning}")


def register(app: typer.Typer) -> None:
    app.command("seal")(seal)
    app.command("unseal")(unseal)
    app.command("verify-file")(verify_file_command)
