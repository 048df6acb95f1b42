"""``sealtune serve`` (the confidential inference server) and ``sealtune auth`` (its API keys).

Wire into the main CLI with ``app.command("serve")(serve.serve)`` and
``app.add_typer(serve.auth_app, name="auth")``.

Token signing keys live in the keyring's ``serve`` section, one record per
key, ``jwt-hs256:<kid>`` (the layout is in :mod:`sealtune.serve.tokens`).
``rotate-token-key`` adds a signing key and makes the old one verify-only;
``retire-token-key`` deletes a verify-only key's record (crypto-shredding:
tokens it signed can never verify again; copies of the keyring file in
backups still hold it), refusing the signing key and, without ``--force``,
a key that stopped signing less than 24 hours ago. Every change is one
keyring transaction, so concurrent processes never make two signing keys,
and a ledger event (kids only, never key material). A running server picks
the changes up within 30 seconds.

What this protects against: API keys are printed once and stored only as
salted hashes; tokens are short-lived; every key and token operation is a
ledger event. What it does not: a key printed to a terminal is in that
terminal's scrollback; with ``dev-software`` attestation (the default here,
for development) clients learn nothing about hardware isolation.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sealtune.cli._common import console, err_console, open_workspace, parse_duration
from sealtune.cli._tables import Col, print_table, when
from sealtune.errors import KeyringError, UsageError
from sealtune.keys.keyfile import b64decode

if TYPE_CHECKING:
    from sealtune.serve.tokens import TokenKeySet, TokenService
    from sealtune.workspace import Workspace

auth_app = typer.Typer(help="API keys and bearer tokens of the inference server.",
                       no_args_is_help=True)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]
_JWT_SECTION, _LEGACY_JWT = "serve", "jwt-hs256"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _key_store(ws: Workspace) -> Any:
    from sealtune.serve.keystore import FILE_NAME, KeyStore

    return KeyStore(ws.root / FILE_NAME)


def _key_resource(kid: str) -> str:
    return f"keyring:{_JWT_SECTION}/{_LEGACY_JWT}:{kid}"  # the record jwt-hs256:<kid>


def _token_keys(ws: Workspace) -> TokenKeySet:
    """Re-read the keyring and return its token keys (a running server's loader)."""
    from sealtune.serve.tokens import TokenKeySet

    ws.keyfile.reload()
    return TokenKeySet.from_records(ws.keyfile.items(_JWT_SECTION))


def _migrate(section: dict[str, Any], *, now: datetime) -> list[tuple[str, str]]:
    """Turn a legacy ``jwt-hs256`` record into a keyed one; create the first key if none.

    Returns the ledger events to write, as (action, kid).
    """
    from sealtune.serve.tokens import JWT_RECORD_PREFIX, TokenKey

    ours = [r for n, r in section.items() if n.startswith(JWT_RECORD_PREFIX)]
    signing = any(r.get("superseded") is None for r in ours)
    events = []
    legacy = section.pop(_LEGACY_JWT, None)
    if legacy is not None:  # kept as the signing key, or verify-only if one already signs
        try:
            secret = b64decode(legacy["key"])
        except (KeyError, TypeError):
            raise KeyringError(f"keyring record {_JWT_SECTION}/{_LEGACY_JWT} is malformed") \
                from None
        key = TokenKey(secrets.token_hex(8), secret, now, now if signing else None)
        section[JWT_RECORD_PREFIX + key.kid] = key.record()
        events.append(("serve.jwt_key_migrated", key.kid))
    elif not ours:
        key = TokenKey.generate(now=now)
        section[JWT_RECORD_PREFIX + key.kid] = key.record()
        events.append(("serve.jwt_key_created", key.kid))
    return events


def _edit_token_keys(
    ws: Workspace, change: Callable[[TokenKeySet], TokenKeySet] | None = None,
) -> tuple[TokenKeySet, TokenKeySet]:
    """Migrate, then apply ``change`` to the token keys, in ONE keyring transaction.

    Under the keyring's lock, so concurrent processes never make two signing
    keys. Returns the key sets before and after ``change``.
    """
    from sealtune.serve.tokens import JWT_RECORD_PREFIX, TokenKeySet

    ws.keyfile.reload()
    section = ws.keyfile.items(_JWT_SECTION)
    if change is None and _LEGACY_JWT not in section \
            and any(n.startswith(JWT_RECORD_PREFIX) for n in section):
        keys = TokenKeySet.from_records(section)  # nothing to migrate: no write, no lock
        return keys, keys
    with ws.keyfile.transaction() as doc:  # re-read under the lock
        section = doc.setdefault(_JWT_SECTION, {})
        events = _migrate(section, now=datetime.now(UTC))
        before = TokenKeySet.from_records(section)
        after = before if change is None else change(before)
        for name in [n for n in section if n.startswith(JWT_RECORD_PREFIX)]:
            del section[name]  # a retired key's record goes: crypto-shredding
        section.update(after.records())
    for action, kid in events:
        ws.audit(action, _key_resource(kid), details={"kid": kid})
    return before, after


def token_service(
    ws: Workspace, *, clock: Callable[[], float] = time.monotonic,
) -> TokenService:
    """The workspace's JWT service, following the token keys in the keyring.

    The first call creates the signing key, or migrates the single
    ``jwt-hs256`` record of earlier versions (it keeps signing, under a new
    kid). The service re-reads the keyring to pick up keys rotated or
    retired by other processes (see :class:`~sealtune.serve.tokens.TokenService`;
    ``clock`` is its monotonic clock, for tests).
    """
    from sealtune.serve.tokens import TokenService

    _, keys = _edit_token_keys(ws)
    return TokenService(keys, issuer=f"sealtune/{ws.config.workspace_id}",
                        loader=lambda: _token_keys(ws), clock=clock)


def rotate_token_key(ws: Workspace, *, now: datetime) -> tuple[str, str]:
    """Make a new signing key; the old one becomes verify-only. Returns (old kid, new kid)."""
    before, after = _edit_token_keys(ws, lambda keys: keys.rotated(now=now))
    old, new = before.signing.kid, after.signing.kid
    ws.audit("serve.jwt_key_rotated", _key_resource(new),
             details={"old_kid": old, "new_kid": new})
    return old, new


def retire_token_key(ws: Workspace, kid: str, *, now: datetime, force: bool = False) -> None:
    """Delete the verify-only key ``kid``: tokens it signed are refused from then on.

    Raises:
        UsageError: see :meth:`~sealtune.serve.tokens.TokenKeySet.retired`.
    """
    _edit_token_keys(ws, lambda keys: keys.retired(kid, now=now, force=force))
    ws.audit("serve.jwt_key_retired", _key_resource(kid),
             details={"kid": kid, "forced": force})


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


def _engine(ws: Workspace, engine: str, model: str, base: Path | None
            ) -> tuple[Any, str, str]:
    """Build the engine; return it, the served model id and the measured model digest."""
    from sealtune.serve.engines import make_engine
    from sealtune.serve.model import (
        adapter_digest,
        is_adapter,
        model_digest,
        resolve_base,
        resolve_model,
    )

    model_id = Path(model).name or model
    if engine == "echo":
        if base is not None:
            raise UsageError("--base applies to the transformers engine only")
        return (make_engine("echo", model_id=model_id), model_id,
                hashlib.sha256(b"sealtune echo engine").hexdigest())
    files = resolve_model(model, keys=ws.keys, workspace_root=ws.root)
    if not is_adapter(files):
        if base is not None:
            raise UsageError(f"--base applies to LoRA adapters; {files.label} is a whole model")
        return make_engine(engine, files=files, model_id=model_id), model_id, \
            model_digest(files)
    base_files = resolve_base(Path(files.label), base=base)
    gen = make_engine(engine, files=files, model_id=model_id, base=base_files)
    return gen, model_id, adapter_digest(files, base_files)


def serve(
    model: Annotated[str, typer.Option("--model", help="Model directory (plain or sealed), or "
                                                        "the name of a workspace model.")],
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
    home: HomeOpt = None,
) -> None:
    """Serve a model: OpenAI-compatible, attested, end-to-end encrypted."""
    import uvicorn

    from sealtune.core.protocol import ServerKeys
    from sealtune.serve import ServeSettings, create_app
    from sealtune.serve.auth import Authenticator, RateLimit
    from sealtune.serve.connections import uvicorn_options, within_fd_limit
    from sealtune.serve.filter import FilterPolicy
    from sealtune.serve.logs import configure_logging
    from sealtune.serve.settings import ConnectionLimits

    if not 0 < rate <= 1e6:
        raise UsageError("--rate must be a positive number of requests per second")
    limits = within_fd_limit(ConnectionLimits(
        header_timeout=header_timeout, body_timeout=body_timeout,
        max_per_client=max_connections_per_client, max_connections=max_connections))
    ws = open_workspace(home)
    try:
        policy = FilterPolicy(blocked_terms=tuple(blocked_term or ()),
                              pii_types=() if no_pii_filter else FilterPolicy().pii_types)
        if no_pii_filter:
            err_console.print("[yellow]warning:[/] --no-pii-filter: outputs are not redacted")
            ws.audit("serve.unsafe_no_pii_filter", model)
        gen, model_id, digest = _engine(ws, engine, model, base)
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
                    ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
                    **uvicorn_options(limits))
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
    ws = open_workspace(home)
    try:
        store = _key_store(ws)
        key_id = store.resolve(key_ref).key_id
        info = store.revoke(key_id, now=datetime.now(UTC))
        ws.audit("serve.key_revoked", f"serve-key:{key_id}", details={"key_id": key_id})
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


@auth_app.command("rotate-token-key")
def rotate_token_key_cmd(home: HomeOpt = None) -> None:
    """Make a new token signing key; the current one keeps verifying until retired."""
    from sealtune.serve.tokens import MAX_TTL

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
    ws = open_workspace(home)
    try:
        _, keys = _edit_token_keys(ws)
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
