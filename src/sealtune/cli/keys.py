"""``sealtune keys``: create, list, rotate (and re-wrap), retire, destroy."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from sealtune.cli._common import console, err_console, open_workspace
from sealtune.cli._tables import Col, print_table, when
from sealtune.errors import SealtuneError, UsageError
from sealtune.keys.base import KeyInfo
from sealtune.keys.files import describe_file, rewrap_file

app = typer.Typer(
    help="Key-encryption keys (KEKs) in local, pkcs11 or openbao keyrings.", no_args_is_help=True
)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


def _show(info: KeyInfo) -> str:
    versions = ",".join(str(v) for v in info.versions) or "-"
    return (
        f"{info.name} ({info.backend}, {info.algorithm}, {info.state}, "
        f"current v{info.current}, live versions {versions})"
    )


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Key name.")],
    backend: Annotated[str, typer.Option(help="local, pkcs11 or openbao.")] = "local",
    algorithm: Annotated[str, typer.Option(help="aes-256-gcm or sm4-gcm.")] = "aes-256-gcm",
    home: HomeOpt = None,
) -> None:
    """Create a key-encryption key."""
    ws = open_workspace(home)
    try:
        info = ws.keys.create(name, backend=backend, algorithm=algorithm)  # type: ignore[arg-type]
        console.print(f"created {_show(info)}")
    finally:
        ws.close()


@app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: HomeOpt = None,
) -> None:
    """List keys (never key material)."""
    ws = open_workspace(home)
    try:
        infos = ws.keys.list()
    finally:
        ws.close()
    if as_json:
        rows = [{**asdict(i), "versions": list(i.versions), "uri": i.uri} for i in infos]
        print(json.dumps(rows, indent=2, sort_keys=True))
        return
    columns = [Col("name", whole=True), Col("backend", whole=True),
               Col("algorithm", whole=True, drop=2), Col("state", whole=True),
               Col("current", whole=True, justify="right"), Col("live versions"),
               Col("created (UTC)", drop=1)]
    print_table(console, columns, [(i.name, i.backend, i.algorithm, i.state, str(i.current),
                                    ",".join(map(str, i.versions)) or "-", when(i.created))
                                   for i in infos])


@app.command("show")
def show(name: Annotated[str, typer.Argument()], home: HomeOpt = None) -> None:
    """Describe one key."""
    ws = open_workspace(home)
    try:
        console.print(_show(ws.keys.info(name)))
    finally:
        ws.close()


def is_sealed_file(path: Path) -> bool:
    """True if ``path`` starts with the sealed-file magic."""
    with path.open("rb") as fh:
        return fh.read(8) == b"SEALTUNE"


def _rewrap_dir(ws: object, name: str, directory: Path) -> tuple[int, int]:
    from sealtune.workspace import Workspace

    assert isinstance(ws, Workspace)
    if not directory.is_dir():
        raise UsageError(f"--rewrap {directory}: not a directory")
    candidates = [p for p in sorted(directory.rglob("*")) if p.is_file() and is_sealed_file(p)]
    done = skipped = 0
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("re-wrapping", total=len(candidates))
        for path in candidates:
            if any(e.kek_uri.split(":", 1)[1] == name for e in describe_file(path).entries):
                rewrap_file(path, keys=ws.keys, key_name=name)
                done += 1
            else:
                skipped += 1
            progress.advance(task)
    return done, skipped


@app.command("rotate")
def rotate(
    name: Annotated[str, typer.Argument()],
    rewrap: Annotated[
        Path | None,
        typer.Option(
            "--rewrap", help="Re-wrap the data keys of sealed files under DIR (header only)."
        ),
    ] = None,
    retire_old: Annotated[
        bool, typer.Option("--retire-old", help="After re-wrapping, destroy the old versions.")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Make a new key version current; optionally re-wrap files and retire old versions."""
    if retire_old and rewrap is None:
        raise UsageError(
            "--retire-old needs --rewrap DIR",
            hint="retiring old versions without re-wrapping makes files unreadable",
        )
    ws = open_workspace(home)
    try:
        info = ws.keys.rotate(name)
        console.print(f"rotated {_show(info)}")
        if rewrap is not None:
            done, skipped = _rewrap_dir(ws, name, rewrap)
            console.print(
                f"re-wrapped {done} sealed file(s) under {rewrap} ({skipped} not under {name})"
            )
        if retire_old:
            info = ws.keys.retire(name, below=info.current)
            console.print(f"retired old versions: {_show(info)}")
    finally:
        ws.close()


@app.command("retire")
def retire(
    name: Annotated[str, typer.Argument()],
    below: Annotated[int, typer.Option(help="Destroy versions lower than this one.")],
    home: HomeOpt = None,
) -> None:
    """Destroy old versions of a key (files still wrapped only by them become unreadable)."""
    ws = open_workspace(home)
    try:
        console.print(f"retired: {_show(ws.keys.retire(name, below=below))}")
    finally:
        ws.close()


@app.command("destroy")
def destroy(
    name: Annotated[str, typer.Argument()],
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Confirm: every file sealed only under this key becomes unreadable."
        ),
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Destroy a key (crypto-shredding). Needs --yes."""
    if not yes:
        raise UsageError(
            f"destroying {name!r} makes every file sealed only under it unreadable",
            hint="repeat with --yes to confirm",
        )
    ws = open_workspace(home)
    try:
        ws.keys.destroy(name)
        console.print(f"destroyed key {name}: data sealed only under it is now unrecoverable")
    except SealtuneError:
        raise
    finally:
        ws.close()
