"""``sealtune storage verify|publish``: check published artifacts; retry failed publications.

Parse, call, print: the checks are :func:`sealtune.storage.artifacts.verify_published`
(exit 3 on any changed, missing or added object, naming the key); ``publish`` is
:meth:`sealtune.workspace.Workspace.publish_pending`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import console, err_console, open_workspace
from sealtune.errors import IntegrityError

app = typer.Typer(help="Where artifacts and catalogues live (blob and metadata stores).",
                  no_args_is_help=True)

COLLECTIONS = ("datasets", "models")


@app.command("verify")
def verify(
    home: Annotated[Path | None, typer.Option("--home", help="Workspace directory.")] = None,
) -> None:
    """Re-read every published artifact and check it against the catalogue (exit 3 if not)."""
    from sealtune.storage import redact_url
    from sealtune.storage.artifacts import verify_published

    ws = open_workspace(home)
    try:
        problems: list[str] = []
        count = 0
        for collection in COLLECTIONS:
            for record in ws.meta.list(collection):
                count += 1
                problems += verify_published(ws.blobs, ws.meta, collection=collection,
                                             name=record.key)
        store = redact_url(ws.blobs.url)
    finally:
        ws.close()
    for problem in problems:
        err_console.print(f"[red]FAIL[/] {problem}")
    if problems:
        raise IntegrityError(f"{len(problems)} problem(s) in {store}",
                             hint="keep the store as evidence; restore from a backup")
    console.print(f"ok: {count} published artifact(s) in {store} match the catalogue")


@app.command("publish")
def publish(
    home: Annotated[Path | None, typer.Option("--home", help="Workspace directory.")] = None,
) -> None:
    """Publish local datasets and models that a failed publication left unpublished."""
    from sealtune.storage import redact_url

    ws = open_workspace(home)
    try:
        if ws.config.storage.is_default:
            console.print("nothing to publish: this workspace keeps artifacts locally")
            return
        done = ws.publish_pending()
        store = redact_url(ws.blobs.url)
    finally:
        ws.close()
    for name in done:
        console.print(f"published {name}")
    console.print(f"ok: {len(done)} artifact(s) published to {store}")
