"""``sealtune serve`` (the confidential inference server) and ``sealtune auth`` (its API keys).

Wire into the main CLI with ``app.command("serve")(serve.serve)`` and
``app.add_typer(serve.auth_app, name="auth")``.

Parse, call, print: the server is assembled by :func:`sealtune.serve.build_server`
from a :class:`~sealtune.serve.ServeOptions`, and the keys and tokens are
administered by :mod:`sealtune.serve.token_admin` (which says what it
protects against). This module only maps options, prints the warnings the
stage returns, and prints keys and tokens once.

What printing protects against and what it does not: an API key or a token
is shown once, on stdout (the message around it on stderr), so it can be
piped; a key printed to a terminal stays in that terminal's scrollback.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sealtune.cli._common import console, err_console, open_workspace, parse_duration
from sealtune.cli._tables import Col, print_table, when

auth_app = typer.Typer(help="API keys and bearer tokens of the inference server.",
                       no_args_is_help=True)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


def __getattr__(name: str) -> Any:
    # cli/demo.py (being changed elsewhere) still imports token_service from here; the
    # function lives in sealtune.serve (token_admin), loaded only when asked for.
    if name == "token_service":
        from sealtune.serve import token_service

        return token_service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def serve(
    model: Annotated[str, typer.Option("--model", help="Model directory (plain or sealed), "
                                                        "the name of a workspace model, or a "
                                                        "registry version NAME@vN / "
                                                        "NAME@STAGE.")],
    base: Annotated[Path | None, typer.Option(
        "--base", help="Base model directory under a LoRA adapter (default: the base "
                       "recorded at training, checked against its digest).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8443,
    attestation: Annotated[str, typer.Option(help="dev-software, sev-snp or tdx.")]
    = "dev-software",
    encrypted_only: Annotated[bool, typer.Option(
        "--encrypted-only", help="Refuse plaintext completions.")] = False,
    engine: Annotated[str, typer.Option(help="transformers or echo.")] = "transformers",
    blocked_term: Annotated[list[str] | None, typer.Option(
        "--blocked-term", help="A term the output filter replaces (repeatable).")] = None,
    no_pii_filter: Annotated[bool, typer.Option(
        "--no-pii-filter", help="Turn off PII redaction of outputs (recorded).")] = False,
    rate: Annotated[float, typer.Option(help="Requests per second per API key.")] = 20.0,
    rotate_key_after: Annotated[str | None, typer.Option(
        help="Rotate the HPKE key after this long, e.g. 12h (default: one key per boot).")]
    = None,
    dev_attestation_key: Annotated[Path | None, typer.Option(
        help="PEM Ed25519 key for dev-software (default: a new key per boot).")] = None,
    log_file: Annotated[Path | None, typer.Option(help="JSON request log file.")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    header_timeout: Annotated[float, typer.Option(
        help="Seconds a client has to send a request head (idle connections close "
             "after it).")] = 10.0,
    body_timeout: Annotated[float, typer.Option(
        help="Seconds a client has to send a request body once the head is in.")] = 15.0,
    max_connections_per_client: Annotated[int, typer.Option(
        help="Open connections one client address may hold (IPv6: one /64).")] = 256,
    max_connections: Annotated[int, typer.Option(
        help="Open connections in all (kept below the descriptor limit).")] = 4096,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus /metrics on this loopback port.")] = None,
    metrics_dir: Annotated[Path | None, typer.Option(
        help="prometheus-client multiprocess directory (several worker processes).")] = None,
    monitor_policy: Annotated[Path | None, typer.Option(
        help="Monitor policy (TOML): detectors, thresholds, responses, webhook.")] = None,
    canaries: Annotated[Path | None, typer.Option(
        help="The release gate's canary secrets, one per line: outputs holding one alert.")]
    = None,
    otel_traces: Annotated[bool, typer.Option(
        "--otel-traces", help="Export OpenTelemetry spans over OTLP (never any text).")] = False,
    home: HomeOpt = None,
) -> None:
    """Serve a model: OpenAI-compatible, attested, end-to-end encrypted."""
    from sealtune.serve import ConnectionLimits, ServeOptions, build_server, run_server

    options = ServeOptions(
        model=model, base=base, host=host, port=port, attestation=attestation,
        encrypted_only=encrypted_only, engine=engine, blocked_terms=tuple(blocked_term or ()),
        unsafe_no_pii_filter=no_pii_filter, rate=rate,
        rotate_key_after=(parse_duration(rotate_key_after, option="--rotate-key-after")
                          if rotate_key_after else None),
        dev_attestation_key=dev_attestation_key, log_file=log_file,
        ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
        limits=ConnectionLimits(header_timeout=header_timeout, body_timeout=body_timeout,
                                max_per_client=max_connections_per_client,
                                max_connections=max_connections),
        metrics_port=metrics_port, metrics_dir=metrics_dir, monitor_policy=monitor_policy,
        canaries=canaries, traces=otel_traces)
    ws = open_workspace(home)
    guard = None
    try:
        if "@" in model and not Path(model).exists():
            from sealtune.registry.watch import build_guarded_server

            server, guard = build_guarded_server(ws, options)
        else:
            server = build_server(ws, options)
        for warning in server.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}")
        err_console.print(escape(server.description))
        run_server(server)
    finally:
        if guard is not None:
            guard.stop()
        ws.close()


@auth_app.command("create-key")
def create_key(
    role: Annotated[str, typer.Option(help="admin, operator, auditor or consumer.")],
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    rate: Annotated[float | None, typer.Option(
        help="This key's rate limit (requests per second).")] = None,
    home: HomeOpt = None,
) -> None:
    """Create an API key and print it ONCE (only a salted hash is stored)."""
    from sealtune.serve import create_api_key

    ws = open_workspace(home)
    try:
        key, info = create_api_key(ws, role=role, name=name, rate_per_second=rate)
    finally:
        ws.close()
    err_console.print(f"created API key {info.key_id} (role {info.role}); it is shown once, "
                      "store it now:")
    print(key)


@auth_app.command("list-keys")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: HomeOpt = None,
) -> None:
    """List API keys (ids, roles, states; never secrets)."""
    from sealtune.serve import open_key_store, public_record

    ws = open_workspace(home)
    try:
        infos = open_key_store(ws).list()
    finally:
        ws.close()
    if as_json:
        print(json.dumps([public_record(i) for i in infos], indent=2, sort_keys=True))
        return
    columns = [Col("id", whole=True), Col("name", whole=True), Col("role", whole=True),
               Col("created (UTC)", drop=2), Col("revoked (UTC)"),
               Col("rate/s", whole=True, justify="right", drop=1)]
    rows = [(i.key_id, i.name, i.role, when(i.created), when(i.revoked),
             "-" if i.rate_per_second is None else f"{i.rate_per_second:g}") for i in infos]
    print_table(console, columns, rows)


@auth_app.command("revoke-key")
def revoke_key(key_ref: Annotated[str, typer.Argument(
                   metavar="NAME_OR_ID", help="The key's id, or its name (sealtune auth "
                                              "list-keys).")],
               home: HomeOpt = None) -> None:
    """Revoke an API key and every token issued for it."""
    from sealtune.serve import revoke_api_key

    ws = open_workspace(home)
    try:
        info = revoke_api_key(ws, key_ref)
    finally:
        ws.close()
    console.print(f"revoked API key {info.key_id} ({info.name}, {info.role})")


@auth_app.command("issue-token")
def issue_token(
    key_id: Annotated[str, typer.Option("--key-id", help="The API key the token acts for.")],
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 15m, 1h (at most 24h).")] = "1h",
    home: HomeOpt = None,
) -> None:
    """Issue a short-lived JWT for an API key (same role and rate limit); printed once."""
    from sealtune.serve import issue_token as issue

    lifetime = parse_duration(ttl, option="--ttl")
    ws = open_workspace(home)
    try:
        issued = issue(ws, key_id, ttl=lifetime)
    finally:
        ws.close()
    expires = datetime.fromtimestamp(issued.expires, UTC).isoformat(timespec="seconds")
    err_console.print(f"token {issued.jti} for key {key_id}, expires {expires}:")
    print(issued.token)
    sys.stdout.flush()


@auth_app.command("rotate-token-key")
def rotate_token_key_cmd(home: HomeOpt = None) -> None:
    """Make a new token signing key; the current one keeps verifying until retired."""
    from sealtune.serve import MAX_TTL, rotate_token_key

    now = datetime.now(UTC)
    ws = open_workspace(home)
    try:
        old, new = rotate_token_key(ws, now=now)
    finally:
        ws.close()
    safe = (now + MAX_TTL).isoformat(timespec="seconds")
    err_console.print(f"new token signing key {new}; {old} is verify-only (running servers "
                      f"follow within 30 s); retire it after {safe} with 'sealtune auth "
                      f"retire-token-key {old}'")
    print(new)


@auth_app.command("retire-token-key")
def retire_token_key_cmd(
    kid: Annotated[str, typer.Argument(help="The kid of a verify-only token key.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Retire it even if tokens it signed may not have expired.")] = False,
    home: HomeOpt = None,
) -> None:
    """Delete a verify-only token key: tokens it signed are refused from then on."""
    from sealtune.serve import retire_token_key

    ws = open_workspace(home)
    try:
        retire_token_key(ws, kid, now=datetime.now(UTC), force=force)
    finally:
        ws.close()
    if force:
        err_console.print("[yellow]warning:[/] --force: tokens this key signed are refused "
                          "even if they have not expired (recorded)")
    console.print(f"retired token key {kid}: deleted from the keyring; running servers refuse "
                  "its tokens within 30 s")


@auth_app.command("token-keys")
def token_keys_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: HomeOpt = None,
) -> None:
    """List token keys (kid, created, state; never the key material).

    Like every token command, it first creates the signing key, or migrates
    the single key of earlier versions, if needed.
    """
    from sealtune.serve import token_keys

    ws = open_workspace(home)
    try:
        keys = token_keys(ws)
    finally:
        ws.close()
    rows = [{"kid": k.kid, "created": k.created.isoformat(timespec="seconds"), "state": k.state,
             "superseded": None if k.superseded is None
             else k.superseded.isoformat(timespec="seconds")}
            for k in sorted(keys.keys, key=lambda k: (k.superseded is None, k.created))]
    if as_json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return
    columns = [Col("kid", whole=True), Col("created (UTC)", drop=1), Col("state", whole=True),
               Col("stopped signing (UTC)")]
    print_table(console, columns, [(str(r["kid"]), when(r["created"]), str(r["state"]),
                                    when(r["superseded"])) for r in rows])
