"""``sealtune bundle``: check an evidence bundle offline; print the keys to pin.

``bundle verify`` needs no workspace and no passphrase: only the bundle and
the pinned keys (``--key``: a pin file, a PEM public key or a key id;
``--ledger-key``: the ledger verifier key string; ``--witness-key`` and
``--witnesses-k``: witnesses, and how many must have cosigned). ``bundle keys``
prints (or writes) the workspace's pin file for auditors to keep (with the
witness policy's keys and k when the workspace has one), creating the evidence
key on first use. The logic is in :mod:`sealtune.evidence`; this module parses,
calls and prints. What it protects against: check names and explanations from
a hostile bundle are printed literally (never as terminal markup). What it does
not: decide which keys to trust (that is what you pin).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sealtune.cli._common import console, open_workspace
from sealtune.outputs import STDIO, is_stdio, open_output

app = typer.Typer(help="Evidence bundles: verify one offline, print the keys to pin.",
                  no_args_is_help=True)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


@app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle directory or .tar.")],
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="Pinned evidence key: the pin file from 'bundle keys', a PEM public "
        "key, or its id sha256:<hex>. Repeatable.")] = None,
    ledger_key: Annotated[list[str] | None, typer.Option(
        "--ledger-key", help="Pinned ledger verifier key (as 'audit key' prints). "
        "Repeatable.")] = None,
    witness_key: Annotated[list[str] | None, typer.Option(
        "--witness-key", help="Pinned witness key (as 'witness init' prints); its "
        "cosignature counts toward k. Repeatable.")] = None,
    witnesses_k: Annotated[int | None, typer.Option(
        "--witnesses-k", help="How many pinned witnesses must have cosigned the ledger "
        "checkpoint (default: the pin file's k, else all pinned witnesses).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check every signature, digest, chain link, ledger proof and witness cosignature.

    Exit 3 on any failure.
    """
    from sealtune.evidence import load_pins, verify_bundle

    pins = load_pins(key or [], ledger_key, witness_keys=witness_key, witnesses_k=witnesses_k)
    report = verify_bundle(bundle, pins)
    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        for check in report.checks:
            mark = "[green]✓[/]" if check.ok else "[red]✗[/]"
            # names in a hostile bundle could look like markup: print them literally
            console.print(f"{mark} {escape(check.name)}: {escape(check.explanation)}",
                          soft_wrap=True)
    report.raise_if_failed()
    if not as_json:
        console.print(f"[green]bundle verified[/]: {len(report.checks)} checks passed")


@app.command("keys")
def keys(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the pin file here (default: stdout).")] = None,
    home: HomeOpt = None,
) -> None:
    """Print the workspace's evidence, ledger and witness keys to pin (a pin file)."""
    from sealtune.evidence import workspace_pins

    ws = open_workspace(home)
    try:
        data, keyid = workspace_pins(ws)
    finally:
        ws.close()
    target = out if out is not None else Path(STDIO)
    with open_output(target, mode=0o644) as fh:  # public keys only
        fh.write(data)
    if not is_stdio(target):
        console.print(f"pin file written to {target} (evidence key {keyid})")
