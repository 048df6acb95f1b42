"""``sealtune demo``: the whole lifecycle on bundled sample data.

Today it covers the foundation: a workspace, keys in the local keyring (and
in a SoftHSM2 token when one can be created here), sealing and opening the
bundled sample conversations, a tamper attempt, key rotation with header-only
re-wrapping, crypto-shredding, and the verified audit log. Later stages
(data, training, assessment, serving) extend it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from sealtune.cli._common import console
from sealtune.config import Pkcs11Config
from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.files import describe_file, open_file, rewrap_file, seal_file
from sealtune.workspace import ENV_PASSPHRASE, Workspace

MARKER = ".sealtune-demo"
SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


def _demo_token(home: Path) -> Pkcs11Config | None:
    """A SoftHSM2 token in the demo directory, standing in for the customer's HSM.

    Returns None (and the demo uses a local key instead) where SoftHSM2 is not
    installed. The PIN is random and lives only in this process's environment.
    """
    module = next((m for m in SOFTHSM_MODULES if Path(m).exists()), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        return None
    tokens = home / "hsm-tokens"
    tokens.mkdir(mode=0o700)
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = secrets.token_hex(8)
    os.environ["SEALTUNE_PKCS11_PIN"] = pin
    subprocess.run(
        [
            util,
            "--init-token",
            "--free",
            "--label",
            "customer-hsm",
            "--pin",
            pin,
            "--so-pin",
            secrets.token_hex(8),
        ],
        check=True,
        capture_output=True,
    )
    return Pkcs11Config(module=module, token_label="customer-hsm")  # noqa: S106 - a label


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fresh_dir(home: Path) -> None:
    if home.exists():
        if not (home / MARKER).exists():
            raise UsageError(
                f"{home} exists and is not a sealtune demo directory",
                hint="pass --home with a new directory",
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, mode=0o700)
    (home / MARKER).write_text("created by 'sealtune demo'; safe to delete\n")


def _step(n: int, title: str) -> None:
    console.rule(f"[bold cyan]{n}. {title}")


def demo(
    home: Annotated[Path, typer.Option("--home", help="Demo directory (recreated).")] = Path(
        "sealtune-demo"
    ),
) -> None:
    """Run the whole lifecycle on bundled sample data."""
    _fresh_dir(home)
    passphrase = os.environ.get(ENV_PASSPHRASE)
    if not passphrase:
        passphrase = "demo-" + secrets.token_urlsafe(18)
        console.print(
            f"[yellow]{ENV_PASSPHRASE} is not set: this demo workspace uses a random "
            f"passphrase, shown once so you can explore it afterwards:[/] {passphrase}"
        )
    ws_root = home / "workspace"
    data_dir = home / "data"
    data_dir.mkdir(mode=0o700)

    _step(1, "Workspace and keys")
    token = _demo_token(home)
    ws = Workspace.init(ws_root, passphrase=passphrase, pkcs11=token)
    try:
        if token is not None:
            ws.keys.create("customer", backend="pkcs11")
            console.print(
                "customer key: generated inside a SoftHSM2 token (PKCS#11), "
                "non-extractable; wrapping happens on the token"
            )
        else:
            ws.keys.create("customer", backend="local")
            console.print("[yellow]SoftHSM2 is not installed: the customer key is local[/]")
        ws.keys.create("gm", backend="local", algorithm="sm4-gcm")
        _keys_table(ws)

        _step(2, "Seal the sample conversations (envelope encryption)")
        sample = resources.files("sealtune.demo_data").joinpath("conversations.jsonl")
        raw = data_dir / "conversations.jsonl"
        raw.write_bytes(sample.read_bytes())
        sealed = data_dir / "conversations.jsonl.sealed"
        seal_file(raw, sealed, keys=ws.keys, key_names=["platform", "customer"])
        info = describe_file(sealed)
        console.print(
            f"sealed {raw.name} ({raw.stat().st_size} bytes) under "
            f"{', '.join(f'{e.kek_uri} v{e.version}' for e in info.entries)}"
        )
        sm4 = data_dir / "conversations.jsonl.sm4.sealed"
        seal_file(raw, sm4, keys=ws.keys, key_names=["gm"])
        console.print(f"sealed a copy with SM4-GCM under gm ({describe_file(sm4).suite})")
        digest = _sha256(raw)
        raw.unlink()
        console.print("removed the plaintext; only sealed copies remain")

        _step(3, "Open it again, and try a tampered copy")
        opened = data_dir / "opened.jsonl"
        open_file(sealed, opened, keys=ws.keys)
        console.print(f"opened: sha256 matches the original: {_sha256(opened) == digest}")
        opened.unlink()
        tampered = data_dir / "tampered.sealed"
        blob = bytearray(sealed.read_bytes())
        blob[-100] ^= 0x01
        tampered.write_bytes(bytes(blob))
        try:
            open_file(tampered, data_dir / "never.jsonl", keys=ws.keys)
            raise AssertionError("tampered file opened")  # pragma: no cover - would be a bug
        except IntegrityError as exc:
            console.print(f"[green]tampering detected[/]: {exc.diagnostics()}")
        console.print(
            f"no partial plaintext left behind: {not (data_dir / 'never.jsonl').exists()}"
        )
        tampered.unlink()

        _step(4, "Rotate the platform key; re-wrap headers only; retire v1")
        ws.keys.rotate("platform")
        rewrap_file(sealed, keys=ws.keys, key_name="platform")
        ws.keys.retire("platform", below=2)
        info = describe_file(sealed)
        console.print(f"header now: {', '.join(f'{e.kek_uri} v{e.version}' for e in info.entries)}")
        open_file(sealed, opened, keys=ws.keys)
        console.print(f"still opens after retiring v1: {_sha256(opened) == digest}")
        opened.unlink()

        _step(5, "Crypto-shredding: destroy the SM4 key")
        ws.keys.destroy("gm")
        try:
            open_file(sm4, opened, keys=ws.keys)
        except Exception as exc:
            console.print(f"[green]the SM4 copy is unrecoverable[/]: {type(exc).__name__}")

        _step(6, "The audit log, verified")
        note = ws.ledger.checkpoint()
        report = ws.ledger.verify(ws.ledger_verifier())
        _ledger_table(ws)
        console.print(Panel(note.rstrip(), title="signed checkpoint (C2SP tlog-checkpoint)"))
        status = "[green]verified[/]" if report.ok else "[red]BROKEN[/]"
        console.print(f"audit log {status}: {report.summary()}")
        if not report.ok:
            raise IntegrityError(f"audit log broken at {report.first_bad_seq}: {report.reason}")
    finally:
        ws.close()
    console.print(
        f"\nworkspace: {ws_root}  (explore with: SEALTUNE_HOME={ws_root} sealtune audit log)"
    )


def _keys_table(ws: Workspace) -> None:
    table = Table("key", "backend", "algorithm", "current version")
    for info in ws.keys.list():
        table.add_row(info.name, info.backend, info.algorithm, str(info.current))
    console.print(table)


def _ledger_table(ws: Workspace) -> None:
    table = Table("seq", "action", "resource", "outcome")
    for e in ws.ledger.entries():
        table.add_row(
            str(e.seq),
            e.action,
            e.resource,
            e.outcome,
            style="" if e.outcome == "success" else "yellow",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
