"""The alert webhook: signed bodies a receiver can check, no redirects followed, a dead receiver
does not stall the caller."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from sealtune.monitor.policy import WebhookPolicy
from sealtune.monitor.webhook import SIGNATURE_HEADER, Webhook


class _Receiver(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, bytes, str | None]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, body, self.headers.get(SIGNATURE_HEADER)))
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.seen = []
    httpd = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_bodies_are_signed_and_redirects_are_not_followed(receiver: str) -> None:
    secret = b"webhook-secret"
    hook = Webhook(WebhookPolicy(f"{receiver}/alerts", 2.0, secret))
    hook.send({"event": "monitor.alert", "detector": "canary", "score": 1.0})
    hook.flush()
    redirecting = Webhook(WebhookPolicy(f"{receiver}/redirect", 2.0, None))
    redirecting.send({"event": "monitor.alert"})
    redirecting.close()
    hook.close()
    (path, body, sig), (path2, _, sig2) = _Receiver.seen
    assert path == "/alerts" and json.loads(body)["detector"] == "canary"
    assert sig == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    forged = body.replace(b"canary", b"volume")
    assert sig != "sha256=" + hmac.new(secret, forged, hashlib.sha256).hexdigest()
    assert path2 == "/redirect" and sig2 is None  # and /elsewhere was never asked
    assert hook.outcomes["delivered"] == 1 and redirecting.outcomes["failed"] == 1


def test_a_dead_receiver_does_not_block_sending() -> None:
    hook = Webhook(WebhookPolicy("http://127.0.0.1:9/none", 0.5, None), capacity=2)
    start = time.perf_counter()
    for _ in range(10):
        hook.send({"event": "monitor.alert"})
    assert time.perf_counter() - start < 0.1
    hook.close()
    assert hook.outcomes["dropped"] >= 7 and hook.outcomes["delivered"] == 0
