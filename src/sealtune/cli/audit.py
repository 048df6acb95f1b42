"""``sealtune audit``: the tamper-evident audit log (the ledger).

``audit verify`` checks every entry, the Merkle trees, the signed checkpoint
chain, the workspace trust state (``ledger.trust``: a missing, truncated or
rolled-back ledger exits 3), any checkpoint an auditor kept (``--trusted``)
and the witness policy. With ``--key`` (the verifier key string printed by
``audit key``, pinned by the auditor out of band) it needs no passphrase;
without it, the verifier key is derived from the workspace keyring.
``audit checkpoint`` signs and prints the global checkpoint; with
``--witness URL`` it asks witnesses to cosign it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from sealtune.cli._common import (
    console,
    err_console,
    open_workspace,
    parse_duration,
    parse_since,
)
from sealtune.cli._tables import Col, print_table, when
from sealtune.errors import ConfigError, UsageError
from sealtune.outputs import STDIO, is_stdio, open_text_output

if TYPE_CHECKING:
    from sealtune.ledger.log import Ledger
    from sealtune.workspace import Workspace

app = typer.Typer(
    help="The tamper-evident audit log: list, verify, checkpoint, export, prune.",
    no_args_is_help=True,
)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


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
    """Show audit log entries (also from a log that fails its trust check, with a warning)."""
    ws = open_workspace(home, check_ledger=False)
    try:
        ledger = _readable_ledger(ws)
        entries = list(
            ledger.entries(
                since=parse_since(since), action=action, actor=actor, outcome=outcome, limit=limit
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
    trusted: Annotated[
        list[Path] | None,
        typer.Option("--trusted", help="A checkpoint file an auditor kept ('audit checkpoint' "
                                       "output); the log must still contain it. Repeatable."),
    ] = None,
    reset_trust: Annotated[
        bool,
        typer.Option("--unsafe-reset-trust", help="Adopt the ledger as it is now as the trust "
                                                  "state (a workspace from before trust states, "
                                                  "or after an investigation). Logged."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOpt = None,
) -> None:
    """Verify every entry, tree, signed checkpoint and the trust state; exit 3 on any break."""
    from sealtune.core.note import NoteVerifier
    from sealtune.ledger import read_checkpoint_file, unsafe_reset_trust, verify_ledger

    notes = [read_checkpoint_file(p) for p in trusted or []]
    ws = open_workspace(home, check_ledger=False)  # verify reports what is wrong itself
    try:
        if reset_trust:
            err_console.print("[yellow]warning:[/] --unsafe-reset-trust: the ledger as it is now "
                              "becomes the reference; a rollback before now goes undetected")
            report = unsafe_reset_trust(ws.ledger_location, origin=ws.origin,
                                        signer=ws.ledger_signer(), trust=ws.trust,
                                        actor=ws.actor,
                                        checkpoint_every=ws.config.ledger.checkpoint_every)
        else:
            verifier = NoteVerifier.from_key_string(key) if key else ws.ledger_verifier()
            report = verify_ledger(ws.ledger_location, origin=ws.origin, verifiers=[verifier],
                                   trust=ws.trust, trusted=notes, witnesses=ws.witness_policy(),
                                   checkpoint_every=ws.config.ledger.checkpoint_every)
        policy = ws.config.ledger.witnesses
    finally:
        ws.close()
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    report.raise_if_failed()
    if not as_json:
        for warning in report.warnings:
            err_console.print(f"[yellow]warning:[/] {warning}")
        console.print(f"[green]audit log verified[/]: {report.summary()}")
        if policy is None:
            console.print("no witness policy configured: a rollback of both ledger.db and "
                          "ledger.trust is detected only with --trusted or witnesses "
                          "(\\[ledger.witnesses] in config.toml)")


@app.command("key")
def key(home: HomeOpt = None) -> None:
    """Print the ledger's verifier key string (public) for auditors to pin."""
    ws = open_workspace(home, check_ledger=False)
    try:
        print(ws.ledger_signer().verifier_key)
    finally:
        ws.close()


@app.command("checkpoint")
def checkpoint(
    witness: Annotated[
        list[str] | None,
        typer.Option("--witness", help="A witness URL to ask for a cosignature (repeatable; "
                                       "default: the \\[ledger.witnesses] urls, if any)."),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Sign the global checkpoint now and print it (C2SP tlog-checkpoint); keep it to audit.

    With --witness (or \\[ledger.witnesses] urls), ask witnesses to cosign it, reporting on
    stderr: exit 3 if one shows the log rolled back or forked, 1 if fewer than k cosigned.
    """
    ws = open_workspace(home)
    try:
        note = ws.seal_ledger()
        sys.stdout.write(note)
        sys.stdout.flush()
        cfg = ws.config.ledger.witnesses
        urls = witness or list(cfg.urls if cfg is not None else ())
        if not urls:
            return
        policy = ws.witness_policy()
        if policy is None:
            raise ConfigError("no witness policy: add [ledger.witnesses] with k and the "
                              "witnesses' keys to config.toml",
                              hint="see docs/formats/ledger-v1.md, section 4c")
        from sealtune.ledger.witness import request_cosignatures

        run = request_cosignatures(ws.ledger.anchors, note, urls, policy.verifiers)
    finally:
        ws.close()
    for outcome in run.outcomes:
        style = "red" if outcome.evidence else ("green" if outcome.cosignatures else "yellow")
        err_console.print(f"[{style}]{escape(outcome.url)}[/]: {escape(outcome.message)}")
    run.raise_if_failed(policy.k)
    err_console.print(f"checkpoint at size {run.size} cosigned by {run.cosigned} witness(es)")


def _readable_ledger(ws: Workspace) -> Ledger:
    """The ledger to read; a failed trust check is shown as a warning, not a refusal
    (reading a broken log is how it is investigated)."""
    ledger, problem = ws.ledger_for_reading()
    if problem is not None:
        err_console.print(f"[red]warning: the audit log fails its trust check:[/] {problem}; "
                          "showing what the database holds now (run 'sealtune audit verify')")
    return ledger


@app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="ISO time or duration (7d).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write here instead of stdout: a file (replaced atomically), "
        "a FIFO or a device ('-': stdout).")] = None,
    home: HomeOpt = None,
) -> None:
    """Export entries as JSONL (canonical leaves: hashes recomputable) or CSV."""
    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"--format {fmt!r}", hint="use jsonl or csv")
    target = out if out is not None else Path(STDIO)
    ws = open_workspace(home)
    try:
        # entries carry names, actions and digests, never payload text: no terminal check
        ledger = _readable_ledger(ws)
        with open_text_output(target, newline="") as fh:
            ledger.export(fmt, fh, since=parse_since(since))  # type: ignore[arg-type]
    finally:
        ws.close()
    if not is_stdio(target):
        console.print(f"exported to {target}")


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
