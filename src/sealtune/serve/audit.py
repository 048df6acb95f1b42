"""Ledger events of the server, written off the request path.

Security events (denied requests, rejected encrypted requests, key rotation,
token revocation, start and stop) go to the workspace's audit ledger through
a bounded queue and one writer thread, so a flood of bad requests costs the
ledger writes but never blocks request handling. If the queue is full,
events are counted and a ``serve.audit_dropped`` event with the count is
written as soon as there is room: the ledger shows that events were lost,
and how many.

What this protects against: denial of service of the request path through
ledger I/O, and silent loss of events. What it does not: events still queued
when the process is killed outright are lost (a clean shutdown flushes).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

AuditFn = Callable[..., Any]
_log = logging.getLogger("sealtune.serve")
_STOP = object()


class AuditSink:
    """Queues ledger events for one writer thread.

    Args:
        append: ``append(*, actor, action, resource, outcome, details)`` (e.g.
            ``Ledger.append``), or None to discard events (tests of other things).
        capacity: queued events before new ones are counted as dropped.
    """

    def __init__(self, append: AuditFn | None, *, capacity: int = 10_000) -> None:
        self._append = append
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._dropped = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if append is not None:
            self._thread = threading.Thread(target=self._run, name="sealtune-audit", daemon=True)
            self._thread.start()

    def record(self, action: str, *, actor: str, resource: str, outcome: str = "success",
               details: dict[str, Any] | None = None) -> None:
        """Queue one event (never blocks)."""
        if self._append is None:
            return
        event = {"actor": actor, "action": action, "resource": resource, "outcome": outcome,
                 "details": details or {}}
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self._dropped += 1

    def _run(self) -> None:
        assert self._append is not None
        while True:
            event = self._queue.get()
            try:
                if event is _STOP:
                    return
                self._write(event)
                with self._lock:
                    dropped, self._dropped = self._dropped, 0
                if dropped:
                    self._write({"actor": "sealtune-serve", "action": "serve.audit_dropped",
                                 "resource": "ledger", "outcome": "failure",
                                 "details": {"count": dropped}})
            finally:
                self._queue.task_done()

    def _write(self, event: dict[str, Any]) -> None:
        assert self._append is not None
        try:
            self._append(**event)
        except Exception as exc:  # keep serving; say which class failed, nothing else
            _log.error("audit ledger write failed", extra={"sealtune": {
                "action": event["action"], "error": type(exc).__name__}})

    def flush(self) -> None:
        """Wait until every queued event is written."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
