"""The witness's HTTP server (stdlib ``http.server``, a bounded thread pool).

``POST /add-checkpoint`` only (C2SP tlog-witness); everything else is 404,
405 or 400. Requests need a ``Content-Length`` of at most 64 KiB, a socket
that stalls for 10 s is dropped, and at most ``workers`` requests run at
once (the rest wait in the pool's queue). It listens on 127.0.0.1 unless told
otherwise, and one directory is served by one process at a time (an
exclusive lock on ``serve.lock``). Logs go to stderr as method, path and
status, never request bodies.

What this protects against: oversized bodies, slow clients holding threads,
two witness processes racing on one state file, tracebacks leaking to clients.

What it does not: there is no TLS and no authentication of submitters (the
protocol authenticates checkpoints by signature; put a TLS proxy in front to
hide which logs talk to the witness); requests queue without bound behind the
pool under a flood.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from sealtune.core.cosignature import CosignatureSigner
from sealtune.core.tlog_witness import MAX_REQUEST_BYTES
from sealtune.errors import UsageError, WorkspaceError
from sealtune.ledger.witness.home import WitnessHome
from sealtune.ledger.witness.service import Witness

SOCKET_TIMEOUT_S = 10.0


class WitnessServer(HTTPServer):
    """Serves one :class:`Witness`; ``serve_forever()`` runs it, ``shutdown()`` stops it."""

    def __init__(self, address: tuple[str, int], witness: Witness, *, workers: int = 8) -> None:
        super().__init__(address, _Handler)
        self.witness = witness
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="witness")

    @property
    def url(self) -> str:
        """The base URL (the submission prefix)."""
        return f"http://{self.server_address[0]!s}:{self.server_address[1]}"

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._process, request, client_address)

    def _process(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Never the default traceback: it could carry request data.
        sys.stderr.write(f"witness: internal error ({type(sys.exc_info()[1]).__name__})\n")

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    server: WitnessServer

    def do_POST(self) -> None:
        if self.path != "/add-checkpoint":
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or len(length) > 9:
            self._send(411 if not length else 400, "text/plain; charset=utf-8",
                       b"a Content-Length is required\n")
            return
        if int(length) > MAX_REQUEST_BYTES:
            self._send(413, "text/plain; charset=utf-8", b"request too large\n")
            return
        body = self.rfile.read(int(length))
        try:
            reply = self.server.witness.add_checkpoint(body)
        except Exception:
            self.server.handle_error(self.request, self.client_address)
            self._send(500, "text/plain; charset=utf-8", b"internal error\n")
            return
        self._send(reply.status, reply.content_type, reply.body)

    def do_GET(self) -> None:
        self._send(405 if self.path == "/add-checkpoint" else 404, "text/plain; charset=utf-8",
                   b"use POST /add-checkpoint\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        sys.stderr.write(f"witness: {self.command} {self.path[:64]!r} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib's messages can quote the request line; say only that something failed.
        sys.stderr.write("witness: malformed or timed-out request\n")


def lock_home(home: WitnessHome) -> int:
    """Take the directory's serve lock for this process; return its file descriptor.

    Raises:
        WorkspaceError: another process serves this witness directory.
    """
    fd = os.open(home.root / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkspaceError(f"another witness process serves {home.root}",
                             hint="stop it first; two servers would race on state.json") from None
    return fd


def make_server(witness: Witness, *, host: str = "127.0.0.1", port: int = 0) -> WitnessServer:
    """Bind (but not start) a server for ``witness``; port 0 picks a free one."""
    return WitnessServer((host, port), witness)


def run_witness(home: WitnessHome, *, passphrase: Callable[[], str], host: str = "127.0.0.1",
                port: int = 0,
                on_listening: Callable[[WitnessServer, CosignatureSigner], None] | None = None,
                ) -> None:
    """Serve the witness in ``home`` until interrupted (``KeyboardInterrupt`` propagates).

    Refuses a witness that trusts no log before asking for ``passphrase``;
    holds the directory's serve lock while it runs; ``on_listening`` is told
    the bound server (its ``url``) and the signer (name and verifier key).

    Raises:
        UsageError: the witness trusts no log.
        WorkspaceError: another process serves this directory.
    """
    logs = home.logs()
    if not logs:
        raise UsageError(f"{home.logs_path} lists no log: the witness would refuse everything",
                         hint="add one with 'sealtune witness add-log'")
    signer = home.signer(passphrase())
    lock = lock_home(home)
    try:
        server = make_server(Witness(signer=signer, logs=logs, home=home), host=host, port=port)
        try:
            if on_listening is not None:
                on_listening(server, signer)
            server.serve_forever()
        finally:
            server.server_close()
    finally:
        os.close(lock)
