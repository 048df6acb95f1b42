"""``sealtune keys``: create, list, rotate (and re-wrap), retire, destroy.

Thin: the logic is :mod:`sealtune.keys.rotation` (what depends on which
version, the checked retire, what a destroy leaves readable).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from sealtune.cli._common import console, err_console, open_workspace
from sealtune.cli._tables import Col, print_table, when
from sealtune.errors import UsageError
from sealtune.keys import (
    KeyInfo,
    RotationReport,
    destroy_key,
    retire_checked,
    rotate_workspace,
)

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


ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="UNSAFE: retire even while files or running jobs still depend on an old "
        "version (they become unreadable; recorded in the audit log).",
    ),
]


def _print_rotation(report: RotationReport, name: str) -> None:
    if report.resumed:
        console.print(f"resumed the interrupted rotation of {name} (v{report.key.current})")
    console.print(
        f"re-wrapped {len(report.rewrapped)} sealed file(s) under {name} "
        f"v{report.key.current or '-'} ({report.current} already current, "
        f"{report.other} not under {name})"
    )
    for artifact in report.republished:
        console.print(f"re-published {artifact} (a new generation in the blob store)")
    for path, error in report.failed:
        err_console.print(f"[yellow]could not re-wrap[/] {path} ({error})")
    if report.failed:
        err_console.print(f"rerun 'sealtune keys rotate {name}' to finish the rotation")


@app.command("rotate")
def rotate(
    name: Annotated[str, typer.Argument()],
    rewrap: Annotated[
        list[Path] | None,
        typer.Option(
            "--rewrap",
            help="Also re-wrap the sealed files under DIR (links are not followed); "
            "the workspace's own files are always re-wrapped. Repeatable.",
        ),
    ] = None,
    retire_old: Annotated[
        bool,
        typer.Option(
            "--retire-old",
            help="Then destroy the old versions: refused while anything still depends on one.",
        ),
    ] = False,
    force: ForceOpt = False,
    home: HomeOpt = None,
) -> None:
    """Make a new key version current and re-wrap every sealed file the workspace knows."""
    if force and not retire_old:
        raise UsageError("--force only applies with --retire-old")
    ws = open_workspace(home)
    try:
        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task("re-wrapping", total=None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                report = rotate_workspace(
                    ws, name, dirs=rewrap or (), retire_old=retire_old, force=force,
                    on_file=lambda _path: progress.advance(task),
                )
        console.print(f"rotated {_show(report.key)}")
        _print_rotation(report, name)
        for warning in caught:
            err_console.print(f"[bold red]WARNING[/]: {warning.message}")
        for line in report.forced:
            err_console.print(f"  now unreadable: {line}")
        if report.retired:
            console.print(f"retired old versions: {_show(report.key)}")
    finally:
        ws.close()


@app.command("retire")
def retire(
    name: Annotated[str, typer.Argument()],
    below: Annotated[int, typer.Option(help="Destroy versions lower than this one.")],
    rewrap: Annotated[
        list[Path] | None,
        typer.Option("--rewrap", help="Also check the sealed files under DIR. Repeatable."),
    ] = None,
    force: ForceOpt = False,
    home: HomeOpt = None,
) -> None:
    """Destroy old versions of a key; refused while known files still depend on them."""
    ws = open_workspace(home)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            forced = retire_checked(ws, name, below=below, dirs=rewrap or (), force=force)
        for warning in caught:
            err_console.print(f"[bold red]WARNING[/]: {warning.message}")
        for line in forced:
            err_console.print(f"  now unreadable: {line}")
        console.print(f"retired: {_show(ws.keys.info(name))}")
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
        impact = destroy_key(ws, name)
        console.print(
            f"destroyed key {name}: {len(impact.shredded)} known file(s) sealed only under it "
            "are now unrecoverable"
        )
        if impact.still_open:
            err_console.print(
                f"[bold yellow]NOT shredded[/]: {len(impact.still_open)} known file(s) are "
                "also wrapped under another live key and still open with it:"
            )
            for path, others in impact.still_open:
                err_console.print(f"  {path} (opens with {', '.join(others)})")
        for artifact in impact.remote_shredded:
            console.print(f"  published copy now unrecoverable: {artifact}")
        for artifact, others in impact.remote_still_open:
            err_console.print(f"[bold yellow]NOT shredded[/]: published copy {artifact} "
                              f"(opens with {', '.join(others)})")
    finally:
        ws.close()
