"""``sealtune serve`` (the confidential inference server) and ``sealtune auth`` (its API keys).

Wire into the main CLI with ``app.command("serve")(serve.serve)`` and
``app.add_typer(serve.auth_app, name="auth")``.

What this protects against: API keys are printed once and stored only as
salted hashes; tokens are short-lived; every key and token operation is a
ledger event. What it does not: a key printed to a terminal is in that
terminal's scrollback; with ``dev-software`` attestation (the default here,
for development) clients learn nothing about hardware isolation.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sealtune.cli._common import console, err_console, open_workspace, parse_duration
from sealtune.errors import UsageError
from sealtune.keys.keyfile import b64decode, b64encode

if TYPE_CHECKING:
    from sealtune.serve.auth import TokenService
    from sealtune.workspace import Workspace

auth_app = typer.Typer(help="API keys and bearer tokens of the inference server.",
                       no_args_is_help=True)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]
_JWT_SECTION, _JWT_NAME = "serve", "jwt-hs256"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _key_store(ws: Workspace) -> Any:
    from sealtune.serve.keystore import FILE_NAME, KeyStore

    return KeyStore(ws.root / FILE_NAME)


def token_service(ws: Workspace) -> TokenService:
    """The workspace's JWT service; its HS256 key is created in the keyring on first use."""
    from sealtune.serve.auth import TokenService

    rec = ws.keyfile.get(_JWT_SECTION, _JWT_NAME)
    if rec is None:
        created = False
        with ws.keyfile.transaction() as doc:  # re-read under the lock: never replace a key
            section = doc.setdefault(_JWT_SECTION, {})
            if _JWT_NAME not in section:
                section[_JWT_NAME] = {"key": b64encode(os.urandom(32))}
                created = True
        if created:
            ws.audit("serve.jwt_key_created", f"keyring:{_JWT_SECTION}/{_JWT_NAME}")
        rec = ws.keyfile.get(_JWT_SECTION, _JWT_NAME)
        assert rec is not None
    return TokenService(b64decode(rec["key"]), issuer=f"sealtune/{ws.config.workspace_id}")


def _provider(name: str, dev_key: Path | None) -> Any:
    from sealtune.attest.base import get_provider

    if name == "dev-software":
        from sealtune.attest.software import SoftwareProvider

        provider = SoftwareProvider.load(dev_key) if dev_key else SoftwareProvider()
        err_console.print("[yellow]warning:[/] dev-software attestation is NOT a TEE: the "
                          "report proves only possession of its key "
                          f"(fingerprint {provider.fingerprint})")
        return provider
    if dev_key is not None:
        raise UsageError("--dev-attestation-key applies to dev-software only")
    return get_provider(name)


def serve(
    model: Annotated[str, typer.Option("--model", help="Model directory (plain or sealed), or "
                                                        "the name of a workspace model.")],
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
    home: HomeOpt = None,
) -> None:
    """Serve a model: OpenAI-compatible, attested, end-to-end encrypted."""
    import uvicorn

    from sealtune.core.protocol import ServerKeys
    from sealtune.serve import ServeSettings, create_app
    from sealtune.serve.auth import Authenticator, RateLimit
    from sealtune.serve.engines import make_engine
    from sealtune.serve.filter import FilterPolicy
    from sealtune.serve.logs import configure_logging
    from sealtune.serve.model import model_digest, resolve_model

    if not 0 < rate <= 1e6:
        raise UsageError("--rate must be a positive number of requests per second")
    ws = open_workspace(home)
    try:
        policy = FilterPolicy(blocked_terms=tuple(blocked_term or ()),
                              pii_types=() if no_pii_filter else FilterPolicy().pii_types)
        if no_pii_filter:
            err_console.print("[yellow]warning:[/] --no-pii-filter: outputs are not redacted")
            ws.audit("serve.unsafe_no_pii_filter", model)
        if engine == "echo":
            model_id = Path(model).name or model
            gen = make_engine("echo", model_id=model_id)
            digest = hashlib.sha256(b"sealtune echo engine").hexdigest()
        else:
            files = resolve_model(model, keys=ws.keys, workspace_root=ws.root)
            model_id = Path(model).name or model
            gen = make_engine(engine, files=files, model_id=model_id)
            digest = model_digest(files)
        settings = ServeSettings(model_id=model_id, model_digest=digest, engine=engine,
                                 encrypted_only=encrypted_only, filter=policy)
        rotate = (parse_duration(rotate_key_after, option="--rotate-key-after").total_seconds()
                  if rotate_key_after else None)
        keys = ServerKeys(now=time.time(), rotate_after_seconds=rotate)
        auth = Authenticator(_key_store(ws), token_service(ws),
                             limit=RateLimit(rate, max(1.0, 2 * rate)))
        app = create_app(settings, engine=gen, keys=keys,
                         provider=_provider(attestation, dev_attestation_key), auth=auth,
                         ledger_audit=ws.ledger.append)
        configure_logging(path=str(log_file) if log_file else None)
        if host not in _LOOPBACK and ssl_certfile is None:
            err_console.print("[yellow]warning:[/] listening beyond loopback without TLS: "
                              "bearer credentials travel in the clear (prompts stay "
                              "protected only in end-to-end encrypted mode)")
        err_console.print(f"serving {model_id} on {host}:{port} ({engine}, {attestation}"
                          f"{', encrypted only' if encrypted_only else ''})")
        uvicorn.run(app, host=host, port=port, access_log=False, server_header=False,
                    ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                    ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)
    finally:
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
    ws = open_workspace(home)
    try:
        key, info = _key_store(ws).create(role=role, name=name, rate_per_second=rate,
                                          now=datetime.now(UTC))
        ws.audit("serve.key_created", f"serve-key:{info.key_id}",
                 details={"key_id": info.key_id, "role": info.role, "name": info.name})
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
    from sealtune.serve.keystore import public_record

    ws = open_workspace(home)
    try:
        infos = _key_store(ws).list()
    finally:
        ws.close()
    if as_json:
        print(json.dumps([public_record(i) for i in infos], indent=2, sort_keys=True))
        return
    table = Table("id", "name", "role", "created", "revoked", "rate/s")
    for i in infos:
        table.add_row(i.key_id, i.name, i.role, i.created, i.revoked or "-",
                      "-" if i.rate_per_second is None else f"{i.rate_per_second:g}")
    console.print(table)


@auth_app.command("revoke-key")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key id.")],
               home: HomeOpt = None) -> None:
    """Revoke an API key and every token issued for it."""
    ws = open_workspace(home)
    try:
        info = _key_store(ws).revoke(key_id, now=datetime.now(UTC))
        ws.audit("serve.key_revoked", f"serve-key:{key_id}", details={"key_id": key_id})
    finally:
        ws.close()
    console.print(f"revoked API key {info.key_id} ({info.role})")


@auth_app.command("issue-token")
def issue_token(
    key_id: Annotated[str, typer.Option("--key-id", help="The API key the token acts for.")],
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 15m, 1h (at most 24h).")] = "1h",
    home: HomeOpt = None,
) -> None:
    """Issue a short-lived JWT for an API key (same role and rate limit); printed once."""
    ws = open_workspace(home)
    try:
        info = _key_store(ws).get(key_id)
        if info is None:
            raise UsageError(f"no API key with id {key_id!r}",
                             hint="list keys with 'sealtune auth list-keys'")
        issued = token_service(ws).issue(info, ttl=parse_duration(ttl, option="--ttl"),
                                         now=datetime.now(UTC))
        ws.audit("serve.token_issued", f"serve-key:{key_id}",
                 details={"key_id": key_id, "jti": issued.jti, "expires": issued.expires})
    finally:
        ws.close()
    expires = datetime.fromtimestamp(issued.expires, UTC).isoformat(timespec="seconds")
    err_console.print(f"token {issued.jti} for key {key_id}, expires {expires}:")
    print(issued.token)
    sys.stdout.flush()
