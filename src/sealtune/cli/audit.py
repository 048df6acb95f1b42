"""``sealtune audit``: the tamper-evident audit log (the ledger).

``audit verify`` checks every entry, the Merkle trees and the signed
checkpoint chain. With ``--key`` (the verifier key string printed by ``audit
key``, pinned by the auditor out of band) it needs no passphrase; without it,
the verifier key is derived from the workspace keyring.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer

from sealtune.cli._common import console, open_workspace, parse_duration
from sealtune.cli._tables import Col, print_table, when
from sealtune.errors import IntegrityError, UsageError

app = typer.Typer(
    help="The tamper-evident audit log: list, verify, export, prune.", no_args_is_help=True
)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.now(UTC) - parse_duration(text, option="--since")
        except UsageError:
            raise UsageError(
                f"--since {text!r}: not an ISO date/time or a duration",
                hint="e.g. --since 2026-01-31 or --since 7d",
            ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@app.command("log")
def log(
    since: Annotated[str | None, typer.Option(help="ISO time or duration (7d, 12h).")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. key.rotate.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    outcome: Annotated[str | None, typer.Option(help="success, failure or denied.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="At most this many entries (newest last).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    home: HomeOpt = None,
) -> None:
    """Show audit log entries."""
    ws = open_workspace(home)
    try:
        entries = list(
            ws.ledger.entries(
                since=_since(since), action=action, actor=actor, outcome=outcome, limit=limit
            )
        )
    finally:
        ws.close()
    if as_json:
        for e in entries:
            print(json.dumps(e.to_json(), sort_keys=True, ensure_ascii=False))
        return
    columns = [Col("seq", whole=True, justify="right"), Col("time (UTC)"),
               Col("actor", drop=2), Col("action", whole=True), Col("resource", whole=True),
               Col("outcome", whole=True), Col("details", drop=1, min_width=24)]
    rows = [(str(e.seq), when(e.time), e.actor, e.action, e.resource, e.outcome,
             json.dumps(e.details, sort_keys=True, ensure_ascii=False)) for e in entries]
    styles = ["" if e.outcome == "success" else "red" for e in entries]
    print_table(console, columns, rows, row_styles=styles, boxed=False)


@app.command("verify")
def verify(
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Pinned verifier key string (from 'audit key'); no passphrase needed."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOpt = None,
) -> None:
    """Verify every entry, tree and signed checkpoint; exit 3 on any break."""
    from sealtune.core.note import NoteVerifier
    from sealtune.ledger.log import Ledger

    ws = open_workspace(home)
    try:
        verifier = NoteVerifier.from_key_string(key) if key else ws.ledger_verifier()
        ledger = Ledger.open(ws.ledger_path, signer=None, origin=ws.origin)
        try:
            report = ledger.verify(verifier)
        finally:
            ledger.close()
    finally:
        ws.close()
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    if not report.ok:
        raise IntegrityError(
            f"audit log broken at sequence number {report.first_bad_seq}: {report.reason}",
            hint="the log was edited outside sealtune; keep this workspace for investigation",
        )
    if not as_json:
        console.print(f"[green]audit log verified[/]: {report.summary()}")


@app.command("key")
def key(home: HomeOpt = None) -> None:
    """Print the ledger's verifier key string (public) for auditors to pin."""
    ws = open_workspace(home)
    try:
        print(ws.ledger_signer().verifier_key)
    finally:
        ws.close()


@app.command("checkpoint")
def checkpoint(home: HomeOpt = None) -> None:
    """Sign a checkpoint of the current log now and print it (C2SP tlog-checkpoint)."""
    ws = open_workspace(home)
    try:
        sys.stdout.write(ws.ledger.checkpoint())
    finally:
        ws.close()


@app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="ISO time or duration (7d).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    home: HomeOpt = None,
) -> None:
    """Export entries as JSONL (canonical leaves: hashes recomputable) or CSV."""
    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"--format {fmt!r}", hint="use jsonl or csv")
    ws = open_workspace(home)
    try:
        if out is None:
            ws.ledger.export(fmt, sys.stdout, since=_since(since))  # type: ignore[arg-type]
        else:
            with out.open("w", encoding="utf-8", newline="") as fh:
                _export_to(ws, fmt, fh, since)
            console.print(f"exported to {out}")
    finally:
        ws.close()


def _export_to(ws: object, fmt: str, fh: TextIO, since: str | None) -> None:
    from sealtune.workspace import Workspace

    assert isinstance(ws, Workspace)
    ws.ledger.export(fmt, fh, since=_since(since))  # type: ignore[arg-type]


@app.command("prune")
def prune(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="e.g. 180d (default: the workspace retention)."),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Delete entries of closed segments older than the retention; checkpoints stay verifiable."""
    ws = open_workspace(home)
    try:
        age = (
            parse_duration(older_than, option="--older-than")
            if older_than
            else parse_duration(f"{ws.config.ledger.retention_days}d", option="retention_days")
        )
        result = ws.ledger.prune(age)
        console.print(
            f"pruned {result.entries_deleted} entries in {result.segments_pruned} segment(s) "
            f"older than {age.days} days; checkpoint chain kept"
        )
    finally:
        ws.close()
