"""``sealtune init`` (create a workspace), ``unlock`` and ``lock`` (the kernel key cache).

Parse, call, print: the choices are checked by
:class:`sealtune.workspace_init.WorkspaceOptions` before the passphrase is
asked for, and :func:`~sealtune.workspace_init.create_workspace` makes the
workspace; unlock and lock are :func:`sealtune.keys.unlock_workspace` and
:func:`~sealtune.keys.lock_workspace`. A new passphrase is prompted twice,
never echoed, or read from ``SEALTUNE_PASSPHRASE``.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import (
    console,
    err_console,
    open_workspace,
    parse_duration,
    unsafe_fast_kdf,
)
from sealtune.config import DEFAULT_BLOBS, DEFAULT_META
from sealtune.errors import UsageError
from sealtune.workspace import ENV_PASSPHRASE, default_home, env_passphrase
from sealtune.workspace_init import WorkspaceOptions, check_new_passphrase, create_workspace


def _new_passphrase() -> str:
    value = env_passphrase()
    if value:
        return check_new_passphrase(value, source=f"in {ENV_PASSPHRASE}")
    if not sys.stdin.isatty():
        raise UsageError(
            "a passphrase for the new keyring is needed and there is no terminal",
            hint=f"set {ENV_PASSPHRASE}",
        )
    first = getpass.getpass("new keyring passphrase: ")
    if first != getpass.getpass("repeat passphrase: "):
        raise UsageError("the passphrases differ")
    return check_new_passphrase(first, source="entered")


def init(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Workspace directory (default $SEALTUNE_HOME or ./.sealtune)."),
    ] = None,
    default_key: Annotated[
        str, typer.Option(help="Name of the local platform key created now.")
    ] = "platform",
    algorithm: Annotated[
        str, typer.Option(help="aes-256-gcm or sm4-gcm for the platform key.")
    ] = "aes-256-gcm",
    pkcs11_module: Annotated[
        str | None, typer.Option(help="PKCS#11 module (.so) for the pkcs11 backend.")
    ] = None,
    pkcs11_token: Annotated[
        str | None, typer.Option(help="Token label for the pkcs11 backend.")
    ] = None,
    openbao_addr: Annotated[
        str | None, typer.Option(help="OpenBao/Vault address for the openbao backend.")
    ] = None,
    openbao_mount: Annotated[str, typer.Option(help="Transit mount path.")] = "transit",
    store: Annotated[str, typer.Option(
        "--store", help="Where sealed artifacts go: file:DIR or s3://BUCKET/PREFIX "
        "(credentials and endpoint from AWS_*).")] = DEFAULT_BLOBS,
    meta: Annotated[str, typer.Option(
        "--meta", help="Where catalogues and the audit ledger go: sqlite:FILE or "
        "postgresql://USER@HOST/DB (password from PGPASSWORD or ~/.pgpass).")] = DEFAULT_META,
) -> None:
    """Create a workspace: config, passphrase-sealed keyring, ledger key, platform key."""
    options = WorkspaceOptions(default_key=default_key, algorithm=algorithm,
                               pkcs11_module=pkcs11_module, pkcs11_token=pkcs11_token,
                               openbao_addr=openbao_addr, openbao_mount=openbao_mount,
                               store=store, meta=meta)
    root = home or default_home()
    kdf = unsafe_fast_kdf("the keyring passphrase KDF uses test-only parameters; this is "
                          "recorded in the audit log")
    ws = create_workspace(root, options, passphrase=_new_passphrase(), kdf=kdf)
    ws.close()
    console.print(
        f"initialised workspace [bold]{root}[/] (id {ws.config.workspace_id}); "
        f"platform key [bold]{default_key}[/] ({algorithm}, local)"
    )


HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


def unlock(
    duration: Annotated[str, typer.Option(
        "--for", help="How long the key stays cached (e.g. 15m, 2h; at most 24h).")] = "15m",
    home: HomeOpt = None,
) -> None:
    """Derive the keyring key once and keep it in the kernel keyring for a while.

    Commands in this workspace then open the keyring without the passphrase
    until the time is up or 'sealtune lock'. The passphrase itself is never
    kept; the derived key is readable by your own processes meanwhile.
    """
    from sealtune.keys import unlock_workspace

    ws = open_workspace(home)
    try:
        done = unlock_workspace(ws, duration=parse_duration(duration, option="--for"))
    finally:
        ws.close()
    console.print(f"unlocked workspace {ws.config.workspace_id} until "
                  f"{done.expires.isoformat(timespec='seconds')} (kernel user keyring); "
                  "'sealtune lock' ends it sooner")


def lock(home: HomeOpt = None) -> None:
    """Destroy the key 'sealtune unlock' cached: the passphrase is needed again."""
    from sealtune.keys import lock_workspace

    ws = open_workspace(home)
    try:
        dropped, audited = lock_workspace(ws)
    finally:
        ws.close()
    if not dropped:
        console.print(f"workspace {ws.config.workspace_id} was not unlocked")
        return
    console.print(f"locked workspace {ws.config.workspace_id}: the cached key is destroyed")
    if not audited:
        err_console.print("[yellow]note:[/] the cached key no longer opened the keyring "
                          "(stale); it was destroyed without an audit event")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("unlock")(unlock)
    app.command("lock")(lock)
