"""``sealtune models register|list|show|verify|export|history|promote|rollback|revoke|...``.

The model registry's commands, added to the ``models`` group: parse, call
:mod:`sealtune.registry`, print. Every check, default and audit event is in
the registry stage.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from sealtune.cli._common import console, err_console, open_workspace

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
RefArg = Annotated[str, typer.Argument(help="NAME@vN or NAME@STAGE (dev, staging, prod).")]
StageOpt = Annotated[str, typer.Option("--stage", help="dev, staging or prod.")]


def _print(data: Any, as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for line in lines:
            console.print(line, markup=False)


def _row(v: dict[str, Any]) -> str:
    flags = [f"stage:{s}" for s in v["stages"]] + (["REVOKED"] if v["revoked"] else [])
    return f"{v['ref']}  {v['created']}  model {v['model_digest']}  {' '.join(flags)}".rstrip()


def register(name: Annotated[str, typer.Argument(help="The model name.")],
             from_job: Annotated[str, typer.Option("--from-job", help="A finished job.")],
             home: HomeOpt = None) -> None:
    """Register a finished job's model as the next version NAME@vN (sealed, signed)."""
    from sealtune.registry import register_model

    ws = open_workspace(home)
    try:
        ref = register_model(ws, name, job=from_job)
    finally:
        ws.close()
    console.print(str(ref), markup=False)


def list_cmd(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Every registered version (stages, revocations)."""
    from sealtune.registry import list_models

    ws = open_workspace(home)
    try:
        rows = list_models(ws)
    finally:
        ws.close()
    _print(rows, as_json, [_row(v) for v in rows] or ["no registered models"])


def show(ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@STAGE.")],
         as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """One model (its versions) or one version (its record and provenance links)."""
    from sealtune.registry import show_model

    ws = open_workspace(home)
    try:
        data = show_model(ws, ref)
    finally:
        ws.close()
    if "versions" in data:
        lines = [f"{data['name']}  stages {json.dumps(data['stages'])}"]
        lines += [_row(v) for v in data["versions"]]
    else:
        lines = [_row(data), f"signature {data['signature']}", f"job {data['record']['job']}"]
        lines += [f"  {n}  sha256 {f['sha256']}  {f['size']} bytes"
                  for n, f in sorted(data["record"]["files"].items())]
    _print(data, as_json, lines)


def verify(ref: RefArg, home: HomeOpt = None) -> None:
    """Check every stored part of a version (exit 3 naming the file on any mismatch)."""
    from sealtune.registry import verify_version

    ws = open_workspace(home)
    try:
        result = verify_version(ws, ref)
    finally:
        ws.close()
    state = " (REVOKED)" if result["revoked"] else ""
    console.print(f"{result['ref']}: verified ({len(result['record']['files'])} files, "
                  f"signature {result['record']['signature']}){state}", markup=False)


def export(ref: RefArg, out: Annotated[Path, typer.Argument(help="New directory.")],
           home: HomeOpt = None) -> None:
    """Write the plaintext model and DIR/model.sig (verify with stock model_signing)."""
    from sealtune.registry import export_version

    ws = open_workspace(home)
    try:
        export_version(ws, ref, out)
    finally:
        ws.close()
    console.print(f"exported {ref} to {out} (plaintext; signature {out / 'model.sig'})",
                  markup=False)


def history_cmd(name: Annotated[str, typer.Argument(help="The model name.")],
                as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """The registry's audit events about a model, oldest first."""
    from sealtune.registry import history

    ws = open_workspace(home)
    try:
        rows = history(ws, name)
    finally:
        ws.close()
    _print(rows, as_json, [f"{r['seq']}  {r['time']}  {r['actor']}  {r['action']}  "
                           f"{r['resource']}  {r['outcome']}" for r in rows])


def promote_cmd(ref: RefArg, stage: StageOpt,
                unsafe_skip_gate: Annotated[bool, typer.Option(
                    "--unsafe-skip-gate", help="Promote without a passing gate report "
                    "(warns; recorded).")] = False,
                home: HomeOpt = None) -> None:
    """Point a stage at a version (needs a passing release-gate report for its digest)."""
    from sealtune.registry import promote

    ws = open_workspace(home)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            done = promote(ws, ref, stage=stage, unsafe_skip_gate=unsafe_skip_gate)
    finally:
        ws.close()
    for w in caught:
        err_console.print(f"warning: {w.message}", markup=False)
    console.print(f"{done.name}@{stage} -> {done}", markup=False)


def rollback_cmd(name: Annotated[str, typer.Argument(help="The model name.")],
                 stage: StageOpt, home: HomeOpt = None) -> None:
    """Move a stage back to its previous promoted, non-revoked version."""
    from sealtune.registry import rollback

    ws = open_workspace(home)
    try:
        done = rollback(ws, name, stage=stage)
    finally:
        ws.close()
    console.print(f"{name}@{stage} -> {done}", markup=False)


def revoke_cmd(ref: RefArg,
               reason: Annotated[str, typer.Option("--reason", help="Why (kept in the "
                                                   "signed registry state).")],
               home: HomeOpt = None) -> None:
    """Revoke a version permanently (servers stop serving it within seconds)."""
    from sealtune.registry import revoke

    ws = open_workspace(home)
    try:
        done = revoke(ws, ref, reason=reason)
    finally:
        ws.close()
    console.print(f"{done} revoked", markup=False)


def signer(out: Annotated[Path, typer.Option("--out", help="Where to write the PEM key.")],
           home: HomeOpt = None) -> None:
    """Write the registry's signing public key (PEM) for model_signing verify."""
    from sealtune.outputs import write_atomic
    from sealtune.registry import signer_public_key

    ws = open_workspace(home)
    try:
        pem, keyid = signer_public_key(ws)
    finally:
        ws.close()
    write_atomic(out, pem, mode=0o644)
    console.print(f"registry signer {keyid} written to {out}", markup=False)


def grant_cmd(actor: Annotated[str, typer.Argument(help="The actor (SEALTUNE_ACTOR).")],
              role: Annotated[str, typer.Argument(help="admin, operator, auditor, consumer.")],
              home: HomeOpt = None) -> None:
    """Give an actor a registry role (admin only)."""
    from sealtune.registry import grant

    ws = open_workspace(home)
    try:
        grant(ws, actor, role)
    finally:
        ws.close()
    console.print(f"{actor}: {role}", markup=False)


def refresh_cmd(home: HomeOpt = None) -> None:
    """Re-sign the registry state with a new expiry (servers refuse an expired one)."""
    from sealtune.registry import refresh

    ws = open_workspace(home)
    try:
        version = refresh(ws)
    finally:
        ws.close()
    console.print(f"registry snapshot {version} signed", markup=False)


def add_commands(app: typer.Typer) -> None:
    """Add the registry's commands to the ``models`` group."""
    app.command("register")(register)
    app.command("list")(list_cmd)
    app.command("show")(show)
    app.command("verify")(verify)
    app.command("export")(export)
    app.command("history")(history_cmd)
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("revoke")(revoke_cmd)
    app.command("signer")(signer)
    app.command("grant")(grant_cmd)
    app.command("refresh")(refresh_cmd)
