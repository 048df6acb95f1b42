"""``sealtune attest``: verify a saved attestation report offline.

``sealtune attest verify REPORT.json [--policy P] [--nonce N]
[--allow-dev-attestation] [--json]`` runs every check of
:func:`sealtune.attest.verify.verify_report` and prints each with ✓ or ✗
and an explanation, then what the result does not prove. Exit status 0 when
every check passes; 3 with a message starting ``attestation:`` when one
fails (the main CLI maps :class:`~sealtune.errors.AttestationError`); 1 for
an invalid policy file; 2 for a malformed ``--nonce``. Nothing is sent
anywhere: verification is offline.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from sealtune.attest import (
    VerificationFailed,
    VerificationPolicy,
    VerificationResult,
    decode_nonce,
    load_policy,
    read_report_file,
    verify_report,
)
from sealtune.errors import AttestationError, UsageError

app = typer.Typer(help="Verify attestation reports offline (the client's checks, explained).",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Attestation reports (a group, so that ``verify`` stays a sub-command)."""


def _print_result(result: VerificationResult) -> None:
    for check in result.checks:
        typer.echo(f"{'✓' if check.ok else '✗'} {check.name}: {check.explanation}")
    for warning in result.warnings:
        typer.echo(f"! {warning}")
    if result.ok:
        kind = "a TEE" if result.is_tee else "NOT a TEE"
        ids = ", ".join(str(c.key_id) for c in result.key_configs)
        extra = " (untested on hardware)" if result.untested_on_hardware else ""
        typer.echo(f"verified: platform {result.platform} ({kind}){extra}; "
                   f"server key id(s) {ids}")


@app.command("verify")
def verify(
    report: Annotated[Path, typer.Argument(help="The report JSON (from GET /v1/attestation).")],
    policy: Annotated[Path | None, typer.Option(
        "--policy", help="Verification policy, JSON or YAML (default: TEEs only).")] = None,
    nonce: Annotated[str | None, typer.Option(
        "--nonce", help="The base64 nonce that was sent with the request.")] = None,
    allow_dev_attestation: Annotated[bool, typer.Option(
        "--allow-dev-attestation",
        help="Also accept dev-software reports (NOT a TEE; development only).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Verify REPORT and explain every check; exit 3 if any fails."""
    rules = load_policy(policy) if policy is not None else VerificationPolicy()
    if allow_dev_attestation:
        rules = rules.unsafe_allowing_dev_attestation()
        print("warning: --allow-dev-attestation: dev-software reports are accepted; they are "
              "NOT a TEE and prove only possession of a key", file=sys.stderr)
    try:
        sent = decode_nonce(nonce) if nonce is not None else None
    except AttestationError as exc:
        raise UsageError(f"--nonce: {exc.message}", hint=exc.hint) from None
    data = read_report_file(report)
    try:
        result = verify_report(data, policy=rules, nonce=sent, now=datetime.now(UTC))
    except VerificationFailed as exc:
        if as_json:
            typer.echo(json.dumps(exc.result.to_dict(), indent=2, ensure_ascii=False))
        else:
            _print_result(exc.result)
        raise
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_result(result)


@app.command("expected")
def expected(
    ref: Annotated[str, typer.Argument(help="A registry version: NAME@vN or NAME@STAGE.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Workspace directory.")] = None,
) -> None:
    """Print the measurements to pin for a registry version (served with default options)."""
    from sealtune.cli._common import console, open_workspace
    from sealtune.registry import expected_measurements

    ws = open_workspace(home)
    try:
        data = expected_measurements(ws, ref)
    finally:
        ws.close()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for name, value in data["measurement"].items():
        console.print(f"{name:<8} {value}", markup=False)
    reg = data["registry"]
    console.print(f"registry {data['model']} signature {reg['signature']} signer "
                  f"{reg['signer']}" + (" (REVOKED)" if data["revoked"] else ""), markup=False)
