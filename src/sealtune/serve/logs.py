"""Request logs of the server: who called what, when, how it went; never what was said.

One structured record per request, on the ``sealtune.serve.access`` logger
and in an in-memory ring buffer (``GET /v1/admin/requests``): time, method,
route template, status, caller id, latency, mode (``plain``/``e2e``),
stream flag, token counts, output-filter replacement counts and, for
failures, an error class name. :class:`JsonFormatter` renders records as
one JSON object per line.

:class:`AccessLogMiddleware` is the outermost handler of the app: it times
each request and catches every exception that escapes a route, logging its
class name only and answering 500 if no response started. Nothing reaches
uvicorn's error logger, whose tracebacks could quote prompt text from an
exception message, and the app leaves uvicorn's access log off.

What this protects against: prompts, responses, credentials and exception
messages in log files and log pipelines. What it does not: the fact, time,
size class and caller of each request are logged (that is the point); a
route's URL query is not logged, but an operator's own reverse proxy may log
it (it holds no prompt data in this API).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOGGER = "sealtune.serve.access"
SCOPE_KEY = "sealtune.request"
_INTERNAL = json.dumps({"error": {"type": "internal_error", "code": "internal_error",
                                  "message": "internal server error"}}).encode()


@dataclass
class RequestRecord:
    """What is logged about one request (no text, no credentials).

    Attributes mirror the JSON fields; ``route`` is the route template (or
    ``-`` for no route), ``error`` an exception class name or a reason code.
    """

    time: str = ""
    method: str = ""
    route: str = "-"
    status: int = 0
    caller: str = "anonymous"
    latency_ms: float = 0.0
    mode: str = "-"
    stream: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    filtered: dict[str, int] = field(default_factory=dict)
    error: str | None = None


_FIELDS = tuple(f.name for f in fields(RequestRecord))


class RequestLog:
    """Emits request records to the access logger and keeps the last ``keep`` of them."""

    def __init__(self, *, keep: int = 1000, logger: logging.Logger | None = None) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._logger = logger or logging.getLogger(ACCESS_LOGGER)

    def emit(self, record: RequestRecord) -> None:
        """Log one record."""
        data = {name: getattr(record, name) for name in _FIELDS}
        data["filtered"] = dict(record.filtered)
        self._recent.append(data)
        level = logging.ERROR if record.status >= 500 else logging.INFO
        self._logger.log(level, "request", extra={"sealtune": data})

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` records, newest last."""
        items = list(self._recent)
        return items[-limit:] if limit > 0 else []


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and the record fields.

    Exception text and tracebacks are replaced by the exception class name.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        fields = getattr(record, "sealtune", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = record.exc_info[0].__name__
        return json.dumps(out, ensure_ascii=False, sort_keys=True)


class AccessLogMiddleware:
    """Outermost ASGI middleware: time, status, record, and a floor under every exception."""

    def __init__(self, app: ASGIApp, *, log: RequestLog,
                 on_done: Callable[[RequestRecord, Scope, float], None] | None = None) -> None:
        self.app = app
        self.log = log
        # The monitor's hook: the record, the scope (texts the route left there) and arrival.
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, arrived = time.perf_counter(), time.time()
        record = RequestRecord(time=datetime.now(UTC).isoformat(timespec="milliseconds"),
                               method=scope["method"])
        scope[SCOPE_KEY] = record
        started = False

        async def send_and_watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                record.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception as exc:  # a floor: never let an exception reach uvicorn's logger
            record.error = type(exc).__name__
            if not started:
                record.status = 500
                try:
                    await _send_500(send)
                except Exception:  # the client is gone; nothing more to do
                    record.error += "+send"
        finally:
            route = scope.get("route")
            record.route = getattr(route, "path", "-")
            record.latency_ms = round((time.perf_counter() - start) * 1000, 3)
            self.log.emit(record)
            if self.on_done is not None:
                try:
                    self.on_done(record, scope, arrived)
                except Exception as exc:  # monitoring must not break serving; class name only
                    logging.getLogger("sealtune.monitor").error(
                        "monitor failed", extra={"sealtune": {"error": type(exc).__name__}})


async def _send_500(send: Send) -> None:
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(_INTERNAL)).encode())]})
    await send({"type": "http.response.body", "body": _INTERNAL})


def configure_logging(*, path: str | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send sealtune's server logs as JSON lines to ``path`` (or stderr).

    Returns:
        The handler installed on the ``sealtune`` logger (remove it to undo).
    """
    handler: logging.Handler = (logging.FileHandler(path, encoding="utf-8") if path
                                else logging.StreamHandler())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sealtune")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
