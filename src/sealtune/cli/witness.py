"""``sealtune witness``: run a C2SP transparency-log witness for audit logs.

``witness init DIR --name NAME`` creates the witness key (sealed under
``SEALTUNE_WITNESS_PASSPHRASE`` or a prompted passphrase) and prints its
verifier key; ``witness add-log DIR --origin O --key K`` trusts a log (the
origin is the first line of ``sealtune audit checkpoint``, the key is ``sealtune
audit key``); ``witness serve`` answers ``POST /add-checkpoint`` on
127.0.0.1 unless ``--host`` says otherwise. See :mod:`sealtune.ledger.witness`
for what a witness protects against and what it does not.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import console, err_console, unsafe_fast_kdf
from sealtune.errors import UsageError

app = typer.Typer(help="A transparency-log witness: cosigns checkpoints that only grow.",
                  no_args_is_help=True)
DirArg = Annotated[Path, typer.Argument(help="The witness directory.")]


def _default_dir() -> Path:
    from sealtune.ledger.witness.home import ENV_HOME

    return Path(os.environ.get(ENV_HOME) or ".sealtune-witness")


def _passphrase(*, confirm: bool) -> str:
    from sealtune.ledger.witness.home import ENV_PASSPHRASE

    value = os.environ.get(ENV_PASSPHRASE)
    if value:
        return value
    if not sys.stdin.isatty():
        raise UsageError("the witness passphrase is needed and there is no terminal",
                         hint=f"set {ENV_PASSPHRASE}")
    first = getpass.getpass("witness passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise UsageError("the passphrases differ")
    return first


@app.command("init")
def init(
    directory: DirArg,
    name: Annotated[str, typer.Option("--name", help="The witness name, e.g. "
                                                     "witness.example/w1.")],
) -> None:
    """Create a witness: its key (sealed), an empty log list and state; print its key."""
    from sealtune.ledger.witness import WitnessHome

    kdf = unsafe_fast_kdf("the witness key is sealed with test-only KDF parameters")
    _, vkey = WitnessHome.init(directory, name=name, passphrase=_passphrase(confirm=True), kdf=kdf)
    err_console.print(f"witness {name} created in {directory}; its verifier key:")
    print(vkey)


@app.command("add-log")
def add_log(
    directory: DirArg,
    origin: Annotated[str, typer.Option("--origin", help="The log's checkpoint origin.")],
    key: Annotated[str, typer.Option("--key", help="The log's verifier key (name+id+key).")],
) -> None:
    """Trust a log: cosign checkpoints of ORIGIN signed by KEY."""
    from sealtune.ledger.witness import WitnessHome

    WitnessHome(directory).add_log(origin, key)
    console.print(f"witness in {directory} now trusts {origin}")


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 7380,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="The witness directory (default $SEALTUNE_WITNESS_HOME or "
                      "./.sealtune-witness).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness) until interrupted."""
    from sealtune.core.cosignature import CosignatureSigner
    from sealtune.ledger.witness import WitnessHome, WitnessServer, run_witness

    def listening(server: WitnessServer, signer: CosignatureSigner) -> None:
        # Plain lines (no wrapping): scripts read the URL and the key from them.
        print(f"witness {signer.name} listening on {server.url} ({len(home.logs())} log(s))",
              file=sys.stderr, flush=True)
        print(f"verifier key {signer.verifier_key}", file=sys.stderr, flush=True)

    home = WitnessHome(directory or _default_dir())
    try:
        run_witness(home, passphrase=lambda: _passphrase(confirm=False), host=host, port=port,
                    on_listening=listening)
    except KeyboardInterrupt:
        err_console.print("witness: stopping")
