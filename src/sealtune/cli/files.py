"""``sealtune seal`` and ``sealtune unseal``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import console, open_workspace
from sealtune.keys.files import open_file, seal_file

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


def seal(
    src: Annotated[Path, typer.Argument(help="Plaintext file to seal.")],
    dst: Annotated[Path, typer.Argument(help="Sealed output file.")],
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
        console.print(
            f"sealed {src} -> {dst} ({result.plaintext_size} bytes, keys: {', '.join(names)})"
        )
    finally:
        ws.close()


def unseal(
    src: Annotated[Path, typer.Argument(help="Sealed file.")],
    dst: Annotated[
        Path, typer.Argument(help="Plaintext output (written only if every segment authenticates).")
    ],
    home: HomeOpt = None,
) -> None:
    """Open a sealed file; nothing is written unless the whole file authenticates."""
    ws = open_workspace(home)
    try:
        result = open_file(src, dst, keys=ws.keys)
        console.print(f"unsealed {src} -> {dst} ({result.plaintext_size} bytes)")
    finally:
        ws.close()


def register(app: typer.Typer) -> None:
    app.command("seal")(seal)
    app.command("unseal")(unseal)
