"""``sealtune proxy``: plaintext OpenAI API on loopback, end-to-end encrypted upstream.

Unmodified tools (the official ``openai`` package, ``curl``) send plaintext
to ``http://127.0.0.1:PORT/v1/...``; the proxy forwards each request through
:class:`~sealtune.client.transport.E2ETransport`, so chat completions leave
this machine sealed to the attested server key, and streamed answers come
back progressively as they are opened. Built on the standard library's
``ThreadingHTTPServer`` so the light client needs no web framework.

The proxy may start before the server (systemd, compose): it attests on
the first chat completion, retrying with exponential back-off for up to
``attest_timeout`` seconds while the server is unreachable or answers 5xx;
if it is still not up, that request gets 503 ``upstream_unavailable`` and
the next one tries again. A report that fails verification is never
retried: 502 ``attestation_failed``.

What this protects against: the same as the SDK (see
:mod:`sealtune.client.transport`) from the proxy to the server process;
nothing is sent before attestation succeeds (no plaintext fall-back while
the server is down); attestation failures stop forwarding (502
``attestation_failed``), a stream
that fails to authenticate or is truncated ends without its terminating
chunk (after an SSE error event), so callers see an error, not a short
answer. It binds to loopback unless ``unsafe_bind_any`` is set, and never
logs bodies (only method, path and status). What it does not: the hop from
the tool to the proxy is plaintext on this machine (anyone who can read
loopback traffic or this process's memory sees prompts); it does not
authenticate local callers (it forwards their ``Authorization`` header, or
adds the configured key for anyone who can reach the port).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from sealtune.attest.policy import VerificationPolicy
from sealtune.attest.verify import VerificationResult
from sealtune.client.transport import E2ETransport
from sealtune.errors import (
    AttestationError,
    AttestationUnavailable,
    IntegrityError,
    SealtuneError,
    UsageError,
)

__all__ = ["ProxyServer", "make_proxy"]

MAX_BODY = 8 << 20
_FORWARD = ("authorization", "content-type", "accept", "user-agent")
_RETURN = ("content-type", "cache-control", "retry-after", "www-authenticate", "x-request-id")
_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
_FIRST_DELAY, _MAX_DELAY = 0.25, 8.0


def _error(message: str, kind: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()


def check_bind(host: str, *, unsafe_bind_any: bool) -> None:
    """Refuse a non-loopback address unless explicitly allowed.

    Raises:
        UsageError: ``host`` is not a loopback address and ``unsafe_bind_any`` is False.
    """
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not unsafe_bind_any:
        raise UsageError(f"refusing to listen on {host}: the proxy accepts plaintext prompts "
                         "and must stay on loopback",
                         hint="use --host 127.0.0.1, or pass --unsafe-bind-any if every "
                              "machine that can reach this address is trusted")


class ProxyServer(ThreadingHTTPServer):
    """The proxy's HTTP server; ``serve_forever()`` runs it, ``shutdown()`` stops it."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, upstream: str, client: httpx.Client,
                 transport: E2ETransport, api_key: str | None,
                 attest_timeout: float = 30.0) -> None:
        super().__init__(address, _Handler)
        self.upstream, self.client, self.transport, self.api_key = (
            upstream, client, transport, api_key)
        self.attest_timeout = attest_timeout
        self._attest_lock = threading.Lock()
        self._tries = 0
        self._last_failure: AttestationError | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        return f"http://{host!s}:{port}"

    def attest(self) -> VerificationResult:
        """Verify the upstream's attestation now, once (the CLI tries this at startup).

        Raises:
            AttestationUnavailable: the server is unreachable or answered 5xx.
            AttestationError: the report failed verification.
        """
        try:
            return self.transport.attest(self.upstream + "/v1")
        except httpx.HTTPError as exc:
            raise AttestationUnavailable(f"cannot fetch {self.upstream}/v1/attestation "
                                         f"({type(exc).__name__})",
                                         hint="check --upstream and that the server runs") \
                from None

    def ensure_attested(self) -> None:
        """Attest the upstream unless a verified key is cached, retrying while it is down.

        Exponential back-off (0.25 s doubling, at most 8 s apart) for up to
        ``attest_timeout`` seconds. Requests that waited while another thread
        tried share its outcome instead of starting their own wait.

        Raises:
            AttestationUnavailable: still unreachable (or 5xx) when time ran out.
            AttestationError: the report failed verification (not retried).
        """
        base = self.upstream + "/v1"
        if self.transport.attested(base):
            return
        seen = self._tries
        with self._attest_lock:
            if self.transport.attested(base):
                return
            if self._tries != seen and self._last_failure is not None:
                raise self._last_failure  # it failed while this request waited
            try:
                result = self._attest_with_backoff()
            except AttestationError as exc:
                self._last_failure = exc
                raise
            finally:
                self._tries += 1
            self._last_failure = None
        sys.stderr.write(f"proxy: attestation verified: platform {result.platform}"
                         f"{'' if result.is_tee else ' (NOT a TEE)'}\n")

    def _attest_with_backoff(self) -> VerificationResult:
        deadline, delay = time.monotonic() + self.attest_timeout, _FIRST_DELAY
        while True:
            try:
                return self.attest()
            except AttestationUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(2 * delay, _MAX_DELAY)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Never the default traceback: an exception's text could carry request data.
        sys.stderr.write(f"proxy: internal error ({type(sys.exc_info()[1]).__name__})\n")

    def server_close(self) -> None:
        super().server_close()
        self.client.close()


def make_proxy(upstream: str, *, policy: VerificationPolicy, host: str = "127.0.0.1",
               port: int = 0, api_key: str | None = None, unsafe_bind_any: bool = False,
               transport: httpx.BaseTransport | None = None,
               attest_timeout: float = 30.0) -> ProxyServer:
    """Build (and bind, but not start) a proxy to ``upstream``.

    Args:
        upstream: the server's URL, e.g. ``https://host:8443`` (a trailing ``/v1`` is ignored).
        policy: what the server's attestation must satisfy.
        host: the address to listen on (loopback unless ``unsafe_bind_any``).
        port: the port (0 picks a free one; see :attr:`ProxyServer.url`).
        api_key: the credential to send upstream; None forwards each caller's
            ``Authorization`` header.
        unsafe_bind_any: allow a non-loopback ``host`` (plaintext prompts then travel
            on that network).
        transport: the real ``httpx`` transport underneath.
        attest_timeout: how long a request may wait for the upstream to come up and
            attest (exponential back-off), in seconds.

    Raises:
        UsageError: a non-loopback ``host`` without ``unsafe_bind_any``, a bad upstream,
            or an ``attest_timeout`` outside 0..3600.
    """
    if not 0 <= attest_timeout <= 3600:
        raise UsageError("--attest-timeout must be between 0 and 3600 seconds")
    check_bind(host, unsafe_bind_any=unsafe_bind_any)
    base = upstream.rstrip("/")
    base = base[:-3] if base.endswith("/v1") else base
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--upstream must be an http(s) URL, not {upstream!r}")
    e2e = E2ETransport(policy, transport=transport)
    client = httpx.Client(transport=e2e, timeout=_TIMEOUT)
    return ProxyServer((host, port), upstream=base, client=client, transport=e2e,
                       api_key=api_key, attest_timeout=attest_timeout)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # replaced by log_request: never the request line's query or any body

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        sys.stderr.write(f"proxy: {self.command} {path} {code}\n")

    def _reply(self, status: int, body: bytes, kind: str = "application/json", *,
               retry_after: bool = False) -> None:
        self.send_response(status)
        if retry_after:
            self.send_header("Retry-After", "5")
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._reply(411, _error("send the body with Content-Length", "invalid_request_error",
                                    "length_required"))
            return None
        size = self.headers.get("Content-Length", "0")
        if not size.isdigit() or int(size) > MAX_BODY:
            self.close_connection = True
            self._reply(413, _error(f"the request body exceeds {MAX_BODY} bytes",
                                    "invalid_request_error", "body_too_large"))
            return None
        return self.rfile.read(int(size))

    def _forward(self) -> None:
        body = self._body()
        if body is None:
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARD}
        if self.server.api_key is not None:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {self.server.api_key}"
        request = self.server.client.build_request(
            self.command, self.server.upstream + self.path, headers=headers,
            content=body or None)
        try:
            if self.command == "POST" and self.path.split("?", 1)[0].endswith(
                    "/chat/completions"):
                self.server.ensure_attested()
            response = self.server.client.send(request, stream=True)
        except AttestationUnavailable as exc:
            self._reply(503, _error(exc.diagnostics(), "upstream_error", "upstream_unavailable"),
                        retry_after=True)
            return
        except AttestationError as exc:
            self._reply(502, _error(exc.diagnostics(), "attestation_error", "attestation_failed"))
            return
        except IntegrityError as exc:
            self._reply(502, _error(exc.diagnostics(), "integrity_error", "integrity_error"))
            return
        except UsageError as exc:
            self._reply(403, _error(exc.message, "permission_error", "plaintext_refused"))
            return
        except httpx.HTTPError as exc:
            self._reply(502, _error(f"upstream unreachable ({type(exc).__name__})",
                                    "upstream_error", "upstream_unreachable"))
            return
        try:
            self._relay(response)
        finally:
            response.close()

    def _relay(self, response: httpx.Response) -> None:
        """Copy the (opened) response: whole with Content-Length, streams chunk by chunk."""
        streamed = response.headers.get("content-type", "").startswith("text/event-stream")
        try:
            body = b"" if streamed else response.read()
        except SealtuneError as exc:
            self._reply(502, _error(exc.diagnostics(), "integrity_error", "integrity_error"))
            return
        self.send_response(response.status_code)
        for name in _RETURN:
            if name in response.headers:
                self.send_header(name, response.headers[name])
        if not streamed:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for piece in response.iter_raw():
                self._chunk(piece)
        except (SealtuneError, httpx.HTTPError) as exc:
            # No terminating chunk: the caller's HTTP client sees an incomplete body.
            kind = "integrity_error" if isinstance(exc, SealtuneError) else "upstream_error"
            self._chunk(b"data: " + _error("the encrypted stream failed: discard the partial "
                                           "answer", kind, kind) + b"\n\n")
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()


def serve(server: ProxyServer) -> None:
    """Run until interrupted (or until another thread calls ``server.shutdown()``)."""
    try:
        server.serve_forever()
    finally:
        server.server_close()
