"""``sealtune init`` (create a workspace), ``unlock`` and ``lock`` (the kernel key cache)."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import console, err_console, open_workspace, parse_duration
from sealtune.config import OpenBaoConfig, Pkcs11Config
from sealtune.errors import UsageError
from sealtune.keys.keyfile import KdfParams
from sealtune.workspace import ENV_PASSPHRASE, Workspace, default_home, env_passphrase

#: The shortest passphrase ``init`` accepts, prompted or from the environment.
MIN_PASSPHRASE = 12


def _checked(passphrase: str, source: str) -> str:
    if len(passphrase) < MIN_PASSPHRASE:
        raise UsageError(f"the passphrase {source} is shorter than {MIN_PASSPHRASE} characters",
                         hint="choose a longer one: the keyring's KDF only slows guessing")
    return passphrase


def _new_passphrase() -> str:
    value = env_passphrase()
    if value:
        return _checked(value, f"in {ENV_PASSPHRASE}")
    if not sys.stdin.isatty():
        raise UsageError(
            "a passphrase for the new keyring is needed and there is no terminal",
            hint=f"set {ENV_PASSPHRASE}",
        )
    first = getpass.getpass("new keyring passphrase: ")
    if first != getpass.getpass("repeat passphrase: "):
        raise UsageError("the passphrases differ")
    return _checked(first, "entered")


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
) -> None:
    """Create a workspace: config, passphrase-sealed keyring, ledger key, platform key."""
    if algorithm not in ("aes-256-gcm", "sm4-gcm"):
        raise UsageError(
            f"--algorithm {algorithm!r} is not supported", hint="use aes-256-gcm or sm4-gcm"
        )
    if bool(pkcs11_module) != bool(pkcs11_token):
        raise UsageError("--pkcs11-module and --pkcs11-token go together")
    root = home or default_home()
    kdf = None
    if os.environ.get("SEALTUNE_UNSAFE_FAST_KDF") == "1":
        err_console.print(
            "[yellow]warning:[/] SEALTUNE_UNSAFE_FAST_KDF=1: the keyring passphrase "
            "KDF uses test-only parameters; this is recorded in the audit log"
        )
        kdf = KdfParams.unsafe_fast()
    ws = Workspace.init(
        root,
        passphrase=_new_passphrase(),
        kdf=kdf,
        default_key=default_key,
        algorithm=algorithm,  # type: ignore[arg-type]
        pkcs11=Pkcs11Config(module=pkcs11_module, token_label=pkcs11_token)
        if pkcs11_module and pkcs11_token
        else None,
        openbao=OpenBaoConfig(addr=openbao_addr, mount=openbao_mount) if openbao_addr else None,
    )
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
    from sealtune.keys.unlock import unlock as unlock_workspace

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
    from sealtune.keys.unlock import lock as lock_workspace

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
