"""Connection limits for the inference server: deadlines for slow clients, caps per address.

uvicorn closes idle kept-alive connections, but not a connection that never
sends a request, sends part of its head and stalls (slowloris), or sends
part of its body; nor does it limit how many connections one address holds.
:func:`uvicorn_config` runs the app on :class:`GuardedH11Protocol`, uvicorn's
h11 protocol plus:

- a *head deadline* (``header_timeout``) armed when a connection opens and
  again whenever it waits for the next request, cancelled when a request head
  is complete;
- a *body deadline* (``body_timeout``) armed when the head is in and the body
  is not, cancelled when the body is complete;
- a count of open connections per client address (IPv6: per /64) and in all:
  beyond ``max_per_client`` a connection gets ``429 too_many_connections``,
  beyond ``max_connections`` ``503 server_busy``, and is closed at once, so
  descriptors stay bounded.

A deadline that passes aborts the connection (no response: the client has
not finished asking). The deadlines stop once a request is complete: how
long an answer takes is the engine's business.

What this protects against: descriptor and memory exhaustion by idle,
half-sent or piled-up connections, from one address or many. What it does
not: a client that reads its answer slowly (the answer waits in flow
control), many addresses each below the cap (``max_connections`` bounds the
total, not who gets it), or a TLS handshake that stalls (asyncio's own
handshake timeout applies; the caps count a connection once it is up).
Terminate TLS in front of the server for that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import time
from dataclasses import replace
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sealtune.serve.openai_api import error_body
from sealtune.serve.settings import ConnectionLimits

__all__ = ["GuardedH11Protocol", "guarded_protocol", "uvicorn_config", "uvicorn_options",
           "within_fd_limit"]

_log = logging.getLogger("sealtune.serve.connections")
_FD_RESERVE = 128  # descriptors kept for the listening socket, files, the ledger, threads


def client_key(peer: Any) -> str:
    """The address a connection counts against: the IP, an IPv6 /64, or ``local``."""
    host = peer[0] if isinstance(peer, tuple | list) and peer else None
    try:
        ip = ipaddress.ip_address(str(host))
    except ValueError:
        return "local"  # a Unix socket, or no peer name
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Book:
    """Open connections per client key and in all (event-loop thread only)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[str, int] = {}
        self.total = 0
        self.refused: dict[int, int] = {}
        self.logged = -10.0

    def admit(self, key: str) -> int | None:
        """Count one more connection for ``key``; or return the status that refuses it."""
        if self.total >= self.limits.max_connections:
            return 503
        if self.open.get(key, 0) >= self.limits.max_per_client:
            return 429
        self.open[key] = self.open.get(key, 0) + 1
        self.total += 1
        return None

    def note_refusal(self, status: int) -> None:
        """Log refusals, at most once per 10 s (a flood must not flood the log)."""
        self.refused[status] = self.refused.get(status, 0) + 1
        now = time.monotonic()
        if now - self.logged >= 10.0:
            self.logged = now
            _log.warning("connections refused: %d over the per-address cap (%d), %d over the "
                         "total cap (%d)", self.refused.get(429, 0), self.limits.max_per_client,
                         self.refused.get(503, 0), self.limits.max_connections)
            self.refused.clear()

    def release(self, key: str) -> None:
        left = self.open[key] - 1
        if left:
            self.open[key] = left
        else:
            del self.open[key]
        self.total -= 1


def _refusal(status: int) -> bytes:
    if status == 429:
        body = error_body("too many open connections from this address; reuse or close "
                          "connections", "rate_limit_error", code="too_many_connections")
        head = b"HTTP/1.1 429 Too Many Requests\r\n"
    else:
        body = error_body("the server has too many open connections; retry shortly",
                          "server_error", code="server_busy")
        head = b"HTTP/1.1 503 Service Unavailable\r\n"
    return (head + b"Content-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines and connection caps (see the module doc).

    Built per server by :func:`guarded_protocol`, which sets :attr:`limits` and
    :attr:`book` on a subclass.
    """

    limits: ClassVar[ConnectionLimits]
    book: ClassVar[_Book]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._key: str | None = None
        # The phase a deadline is armed for: the client's h11 state and the request
        # cycle object (held, so a new cycle can never look like the old one).
        self._phase: tuple[Any, Any] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        key = client_key(transport.get_extra_info("peername"))
        refused = self.book.admit(key)
        if refused is not None:
            self.book.note_refusal(refused)
            transport.write(_refusal(refused))
            transport.close()
            return
        self._key = key
        super().connection_made(transport)
        self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._key is None:
            return  # refused: uvicorn never saw it
        self._cancel()
        self.book.release(self._key)
        self._key = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._key is None:
            return  # refused and closing
        super().data_received(data)
        self._rearm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._rearm()

    # -- deadlines -------------------------------------------------------------------------

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _rearm(self) -> None:
        """Arm the deadline of the phase the client is in, once per phase."""
        if self._key is None or self.transport.is_closing():
            return
        state = self.conn.their_state
        timeout = (self.limits.header_timeout if state is h11.IDLE
                   else self.limits.body_timeout if state is h11.SEND_BODY else None)
        phase = (state, self.cycle)  # a new request is a new phase, even in one call
        if self._phase is not None and phase[0] is self._phase[0] \
                and phase[1] is self._phase[1]:
            return
        self._cancel()
        self._phase = phase
        if timeout is not None:
            self._deadline = self.loop.call_later(timeout, self._expire, state)

    def _expire(self, state: Any) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        _log.info("connection closed: the request %s did not arrive within %g s",
                  "head" if state is h11.IDLE else "body",
                  self.limits.header_timeout if state is h11.IDLE else self.limits.body_timeout)
        self.transport.abort()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class for one server: its own limits and its own connection count."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"limits": limits, "book": _Book(limits)})


def within_fd_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """``limits`` with ``max_connections`` below this process's descriptor limit.

    Raises the soft ``RLIMIT_NOFILE`` towards the hard one first if that is needed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = limits.max_connections + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= want:
        return limits
    cap = max(1, soft - _FD_RESERVE)
    return replace(limits, max_connections=cap, max_per_client=min(limits.max_per_client, cap))


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """The ``uvicorn.run``/``uvicorn.Config`` options that enforce ``limits``.

    The protocol is :class:`GuardedH11Protocol`; the keep-alive timeout is at
    most ``header_timeout``; no WebSocket upgrades (the app has no WebSocket
    route, and an upgraded connection would leave this protocol and its count).
    """
    return {"http": guarded_protocol(limits), "ws": "none",
            "timeout_keep_alive": min(5.0, limits.header_timeout)}


def uvicorn_config(app: Any, *, limits: ConnectionLimits, **options: Any) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving ``app`` under ``limits`` (``options``: host, port, ...)."""
    return uvicorn.Config(app, **{**uvicorn_options(limits), **options})
