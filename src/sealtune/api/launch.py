"""Assemble and run the control plane over an open workspace (``sealtune console``).

What this protects against: listening beyond loopback by accident (the
default host is 127.0.0.1; another host without TLS is warned about, since
API keys and session cookies would travel in the clear). What it does not:
it does not terminate TLS itself unless given a certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sealtune.workspace import Workspace

__all__ = ["LOOPBACK", "ConsoleOptions", "ConsoleServer", "build_console", "run_console"]

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class ConsoleOptions:
    """How to serve the console.

    Attributes:
        host, port: where to listen.
        rate: requests per second per API key (burst twice that).
        ssl_certfile, ssl_keyfile: TLS (PEM), both or neither.
    """

    host: str = "127.0.0.1"
    port: int = 8600
    rate: float = 20.0
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


@dataclass(frozen=True)
class ConsoleServer:
    """A built console: the app, uvicorn's options and warnings to show."""

    app: FastAPI
    uvicorn_options: dict[str, Any]
    warnings: tuple[str, ...]


def build_console(ws: Workspace, options: ConsoleOptions) -> ConsoleServer:
    """Build the console app over ``ws`` (its API keys, token keys and ledger).

    Raises:
        UsageError: a route without an access rule, or TLS half-configured.
    """
    from sealtune.api.app import Console, create_app
    from sealtune.api.session import ConsoleAuth
    from sealtune.errors import UsageError
    from sealtune.serve.audit import AuditSink
    from sealtune.serve.auth import Authenticator, RateLimit
    from sealtune.serve.token_admin import open_key_store, token_service

    o = options
    if (o.ssl_certfile is None) != (o.ssl_keyfile is None):
        raise UsageError("--ssl-certfile and --ssl-keyfile go together",
                         hint="give both, or neither")
    limit = RateLimit(o.rate, max(1.0, 2 * o.rate))
    auth = ConsoleAuth(Authenticator(open_key_store(ws), token_service(ws), limit=limit),
                       limit=limit)
    console = Console(ws, auth, AuditSink(ws.ledger.append),
                      secure_cookie=o.ssl_certfile is not None)
    warnings = []
    if o.host not in LOOPBACK and o.ssl_certfile is None:
        warnings.append("listening beyond loopback without TLS: API keys and session cookies "
                        "travel in the clear")
    run = {"host": o.host, "port": o.port, "access_log": False, "server_header": False,
           "ssl_certfile": str(o.ssl_certfile) if o.ssl_certfile else None,
           "ssl_keyfile": str(o.ssl_keyfile) if o.ssl_keyfile else None}
    return ConsoleServer(create_app(console), run, tuple(warnings))


def run_console(server: ConsoleServer) -> None:
    """Serve until interrupted."""
    import uvicorn

    uvicorn.run(server.app, **server.uvicorn_options)
