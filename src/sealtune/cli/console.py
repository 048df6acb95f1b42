"""``sealtune console``: serve the control-plane API and the web console.

Parse, call, print: the app is built by :func:`sealtune.api.build_console`.
What this protects against and what it does not: see :mod:`sealtune.api`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sealtune.cli._common import err_console, open_workspace

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


def console(
    port: Annotated[int, typer.Option(help="Port.")] = 8600,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    rate: Annotated[float, typer.Option(help="Requests per second per API key.")] = 20.0,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    home: HomeOpt = None,
) -> None:
    """Serve the control plane: the API under /api/v1 and the web console under /."""
    from sealtune.api import ConsoleOptions, build_console
    from sealtune.api.launch import run_console

    ws = open_workspace(home)
    try:
        server = build_console(ws, ConsoleOptions(host=host, port=port, rate=rate,
                                                  ssl_certfile=ssl_certfile,
                                                  ssl_keyfile=ssl_keyfile))
        for warning in server.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}")
        err_console.print(f"console on http://{escape(host)}:{port}/ (log in with an API key "
                          "from 'sealtune auth create-key')")
        run_console(server)
    finally:
        ws.close()
