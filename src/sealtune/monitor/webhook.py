"""Alert delivery to a webhook: one JSON POST per alert, off the request path, no text.

The body is the alert's fields (detector, key id, model version, score,
threshold, time) plus the action the policy took and ``"event":
"monitor.alert"``; nothing else exists to be sent. With a secret, the
header ``X-Sealtune-Signature: sha256=<hex>`` carries HMAC-SHA-256 of the
body under it, so the receiver can tell the server's alerts from forgeries.
Deliveries go through a bounded queue and one thread, each with a timeout
and no redirects; a full queue drops the alert (counted), a failed
delivery is counted and not retried (the ledger event is the record; the
webhook is a notification).

What this protects against: a slow or dead receiver stalling the server;
a redirect sending alerts elsewhere; forged alerts (with a secret). What it
does not: delivery guarantees, or confidentiality over plain ``http`` (key
ids and model versions cross the network; use https).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from sealtune.keys.derive import keyed_digest
from sealtune.monitor.policy import WebhookPolicy

__all__ = ["SIGNATURE_HEADER", "Webhook", "signature"]

SIGNATURE_HEADER = "X-Sealtune-Signature"
_log = logging.getLogger("sealtune.monitor")
_STOP = object()


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Sealtune-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA-256>``."""
    return "sha256=" + keyed_digest(secret, [body]).hex()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is a failed delivery, not a new destination


class Webhook:
    """Posts alert bodies to one URL from a background thread.

    Args:
        policy: the URL, timeout and optional signing secret.
        capacity: alerts queued before new ones are dropped.

    Attributes:
        outcomes: ``delivered``, ``failed`` and ``dropped`` counts.
    """

    def __init__(self, policy: WebhookPolicy, *, capacity: int = 1000) -> None:
        self.policy = policy
        self.outcomes: Counter[str] = Counter()
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sealtune-webhook", daemon=True)
        self._thread.start()

    def send(self, body: dict[str, Any]) -> None:
        """Queue one alert body (JSON-ready; never blocks)."""
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self._count("dropped")

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                if body is _STOP:
                    return
                self._count("delivered" if self._post(body) else "failed")
            finally:
                self._queue.task_done()

    def _post(self, body: dict[str, Any]) -> bool:
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "sealtune-monitor"}
        if self.policy.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.policy.secret, data)
        # The policy admits http(s) URLs only (policy._webhook), and redirects are refused.
        request = urllib.request.Request(self.policy.url, data=data, headers=headers,  # noqa: S310
                                         method="POST")
        try:
            with self._opener.open(request, timeout=self.policy.timeout_seconds) as resp:
                ok = 200 <= int(resp.status) < 300
        except (urllib.error.URLError, OSError, ValueError) as exc:
            _log.warning("alert webhook delivery failed", extra={"sealtune": {
                "error": type(exc).__name__}})
            return False
        return ok

    def flush(self) -> None:
        """Wait until every queued alert was delivered or failed."""
        self._queue.join()

    def close(self) -> None:
        """Deliver what is queued (each within its timeout), then stop."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=60)
