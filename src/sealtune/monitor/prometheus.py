"""The Prometheus adapter of the MetricsSink port, and the loopback ``/metrics`` listener.

:class:`PrometheusSink` turns :mod:`sealtune.monitor.base` events into
counters, histograms and gauges (names in :data:`METRIC_NAMES`, documented in
``docs/monitoring.md``). Every label value is a route template, a method, a
status code, a reason code, an exception class name, an entity tag, a
detector name or the model's name and digest, each passed through
:func:`~sealtune.monitor.base.safe_label`; there is no label for a caller,
a key or anything from a request body.

Several server processes on one host share one view with prometheus-client's
multiprocess mode: each process writes its values to memory-mapped files in
one directory and whichever process serves ``/metrics`` adds them up; a
process that stops cleanly takes its live gauges out
(``mark_process_dead``). The mode is chosen when prometheus-client is first
imported (``PROMETHEUS_MULTIPROC_DIR``), so :func:`open_sink` sets it, and
refuses when the library was already loaded in the other mode.

:func:`serve_metrics` listens on loopback only unless told otherwise
(``unsafe_any_host``): the numbers say how busy the model is, which keys are
refused and which detectors fire, which is for operators.

What this protects against: request content or caller identities in
metrics; undercounting with several worker processes; an exposed metrics
port by default. What it does not: the metrics themselves (volumes, timing,
error classes) are visible to whoever can scrape them; a process killed
outright leaves its live gauges in the directory until the directory is
cleared, and a directory shared with an untrusted user lets that user
inject numbers (:func:`open_sink` refuses a group- or world-writable one).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealtune.errors import ConfigError, UsageError
from sealtune.monitor.base import (
    SINKS,
    AlertRaised,
    AuthDenied,
    E2ERejected,
    MetricEvent,
    ModelServed,
    RequestDone,
    RequestStarted,
    safe_label,
)

__all__ = ["LOOPBACK", "METRIC_NAMES", "MetricsListener", "PrometheusSink", "open_sink",
           "serve_metrics"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
ENV = "PROMETHEUS_MULTIPROC_DIR"
_HINT = "pip install 'sealtune[monitor]'"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0)
#: Every metric this adapter exposes (counters without their ``_total`` suffix).
METRIC_NAMES = (
    "sealtune_requests", "sealtune_request_duration_seconds",
    "sealtune_time_to_first_token_seconds", "sealtune_tokens", "sealtune_queue_depth",
    "sealtune_auth_denials", "sealtune_e2e_rejects", "sealtune_filter_redactions",
    "sealtune_monitor_alerts", "sealtune_model_info", "sealtune_model_withdrawn",
)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigError("metrics need prometheus-client", hint=_HINT) from exc
    return prometheus_client


@dataclass(frozen=True)
class _Metrics:
    requests: Any
    duration: Any
    ttft: Any
    tokens: Any
    queue: Any
    denials: Any
    e2e: Any
    redactions: Any
    alerts: Any
    model: Any
    withdrawn: Any


def _make_metrics(registry: Any) -> _Metrics:
    p = _prometheus()
    kw: dict[str, Any] = {"registry": registry}
    return _Metrics(
        requests=p.Counter("sealtune_requests", "Requests finished, by route, method, status "
                           "and error class.", ["route", "method", "status", "error"], **kw),
        duration=p.Histogram("sealtune_request_duration_seconds", "Seconds from arrival to "
                             "the end of the answer.", ["route"], buckets=_LATENCY_BUCKETS, **kw),
        ttft=p.Histogram("sealtune_time_to_first_token_seconds", "Seconds from arrival to the "
                         "first generated text sent.", ["stream"], buckets=_LATENCY_BUCKETS,
                         **kw),
        tokens=p.Counter("sealtune_tokens", "Tokens in (prompt) and out (completion).",
                         ["direction"], **kw),
        queue=p.Gauge("sealtune_queue_depth", "Chat completions admitted and not finished.",
                      multiprocess_mode="livesum", **kw),
        denials=p.Counter("sealtune_auth_denials", "Requests refused by authentication, role "
                          "or rate limit, by reason.", ["reason"], **kw),
        e2e=p.Counter("sealtune_e2e_rejects", "End-to-end encrypted requests that did not "
                      "open, by reason.", ["reason"], **kw),
        redactions=p.Counter("sealtune_filter_redactions", "Output-filter replacements, by "
                             "entity type.", ["type"], **kw),
        alerts=p.Counter("sealtune_monitor_alerts", "Detector alerts, by detector and the "
                         "policy's response.", ["detector", "action"], **kw),
        model=p.Gauge("sealtune_model_info", "The model version served (1 while served).",
                      ["model", "version", "digest", "engine"], multiprocess_mode="livemax",
                      **kw),
        withdrawn=p.Gauge("sealtune_model_withdrawn", "1 when the model was taken out of "
                          "service by a monitor policy.", ["model"],
                          multiprocess_mode="livemax", **kw),
    )


_shared: _Metrics | None = None
_shared_lock = threading.Lock()


class PrometheusSink:
    """Prometheus metrics of one server process.

    Build it with :func:`open_sink`. :attr:`registry` is what ``/metrics``
    serves: this process's metrics, or, in multiprocess mode, the sum over
    every process writing to :attr:`directory`.
    """

    def __init__(self, *, directory: Path | None = None) -> None:
        global _shared
        p = _prometheus()
        self.directory = directory
        if directory is None:
            self.registry = p.CollectorRegistry()
            self._m = _make_metrics(self.registry)
            p.ProcessCollector(registry=self.registry)  # CPU, memory, descriptors
        else:
            from prometheus_client.multiprocess import MultiProcessCollector

            self.registry = p.CollectorRegistry()
            MultiProcessCollector(self.registry, path=str(directory))  # type: ignore[no-untyped-call]
            with _shared_lock:  # one set of metric objects per process writes the files
                if _shared is None:
                    _shared = _make_metrics(None)
                self._m = _shared
        self._lock = threading.Lock()

    def record(self, event: MetricEvent) -> None:
        """Count or measure one event."""
        m = self._m
        if isinstance(event, RequestDone):
            self._done(event)
        elif isinstance(event, RequestStarted):
            m.queue.inc()
        elif isinstance(event, AuthDenied):
            m.denials.labels(safe_label(event.reason)).inc()
        elif isinstance(event, E2ERejected):
            m.e2e.labels(safe_label(event.reason)).inc()
        elif isinstance(event, AlertRaised):
            m.alerts.labels(safe_label(event.detector), safe_label(event.action)).inc()
        elif isinstance(event, ModelServed):
            model = safe_label(event.model_id)
            m.model.labels(model, safe_label(event.version), safe_label(event.digest[:12]),
                           safe_label(event.engine)).set(1 if event.serving else 0)
            if event.serving:
                m.withdrawn.labels(model).set(1 if event.withdrawn else 0)

    def _done(self, event: RequestDone) -> None:
        m, meta = self._m, event.meta
        if event.admitted:
            m.queue.dec()
        route = safe_label(meta.route)
        m.requests.labels(route, safe_label(meta.method), str(int(meta.status)),
                          safe_label(meta.error, default="other")).inc()
        m.duration.labels(route).observe(max(0.0, meta.latency))
        if meta.ttft is not None:
            m.ttft.labels("true" if meta.stream else "false").observe(max(0.0, meta.ttft))
        if meta.prompt_tokens:
            m.tokens.labels("in").inc(meta.prompt_tokens)
        if meta.completion_tokens:
            m.tokens.labels("out").inc(meta.completion_tokens)
        for tag, count in meta.filtered.items():
            if count > 0:
                m.redactions.labels(safe_label(tag)).inc(count)

    def exposition(self) -> bytes:
        """The Prometheus text format of :attr:`registry` (what a scrape returns)."""
        return bytes(_prometheus().generate_latest(self.registry))

    def close(self) -> None:
        """Multiprocess mode: take this process's live gauges out of the shared view."""
        if self.directory is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid(), str(self.directory))  # type: ignore[no-untyped-call]


def _check_directory(directory: Path) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    if st.st_mode & 0o022:
        raise ConfigError(f"metrics directory {directory} is group- or world-writable",
                          hint="use a directory only the server's user can write (chmod 700): "
                               "anyone who can write there can change the numbers")
    return directory.resolve()


def open_sink(*, directory: Path | None = None) -> PrometheusSink:
    """A Prometheus sink: per process, or shared through ``directory`` (multiprocess mode).

    Without ``directory``, ``$PROMETHEUS_MULTIPROC_DIR`` is used if set.

    Raises:
        ConfigError: prometheus-client is missing, the directory is unsafe, or
            the library was already loaded in the other mode in this process.
    """
    env = os.environ.get(ENV)
    if directory is None and env:
        directory = Path(env)
    if directory is not None:
        directory = _check_directory(directory)
        if env and Path(env).resolve() != directory:
            raise ConfigError(f"${ENV} names another directory than the metrics directory",
                              hint=f"unset {ENV} or pass the same directory")
        os.environ[ENV] = str(directory)
    _prometheus()
    from prometheus_client import values

    multi = bool(getattr(values.ValueClass, "_multiprocess", False))
    if multi != (directory is not None):
        raise ConfigError("prometheus-client was loaded in this process before the metrics "
                          "mode was chosen", hint="set the metrics directory (or "
                          f"${ENV}) before anything imports prometheus_client")
    return PrometheusSink(directory=directory)


SINKS.register("prometheus", lambda **options: open_sink(**options))


class MetricsListener:
    """A running ``/metrics`` listener (stop it with :meth:`stop`).

    Attributes:
        host: the address it listens on.
        port: the port (the real one when 0 was asked for).
    """

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread
        self.host, self.port = server.server_address[0], int(server.server_address[1])

    def stop(self) -> None:
        """Stop listening and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def check_bind(host: str, *, unsafe_any_host: bool = False) -> None:
    """Refuse a non-loopback metrics address unless ``unsafe_any_host``.

    Raises:
        UsageError: ``host`` is not loopback and ``unsafe_any_host`` is False.
    """
    if host not in LOOPBACK and not unsafe_any_host:
        raise UsageError(f"--metrics-host {host}: the metrics port listens on loopback only",
                         hint="scrape through a local agent, or pass "
                              "--unsafe-metrics-bind-any (the metrics are unauthenticated)")


def serve_metrics(sink: PrometheusSink, *, host: str = "127.0.0.1", port: int,
                  unsafe_any_host: bool = False) -> MetricsListener:
    """Serve ``sink``'s registry at ``http://host:port/metrics`` on a background thread.

    Raises:
        UsageError: a non-loopback ``host`` without ``unsafe_any_host``.
        ConfigError: the port cannot be bound.
    """
    check_bind(host, unsafe_any_host=unsafe_any_host)
    try:
        server, thread = _prometheus().start_http_server(port, addr=host,
                                                         registry=sink.registry)
    except OSError as exc:
        raise ConfigError(f"cannot listen for metrics on {host}:{port} ({exc.strerror})",
                          hint="choose a free port with --metrics-port") from None
    return MetricsListener(server, thread)
