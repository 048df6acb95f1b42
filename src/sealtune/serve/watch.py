"""The server's side of monitoring: feeds :mod:`sealtune.monitor` and carries out its responses.

:class:`Watch` is what the app holds: the metrics sink, the optional tracer
and the monitor. The access-log middleware hands it each finished request
(:meth:`Watch.done`: the request record and, for chat completions, the
prompt and output kept in the request scope for the duration of the
request); the completion path asks the :class:`Served` version it runs to
check an answer before it is sent (:meth:`Served.guard`: regurgitated
training text or a canary is redacted, or the answer blocked, as the policy
says; :meth:`Served.stream_guard` does the same for a streamed answer as it
is generated). When the server swaps model versions (a registry stage alias
moved) it :meth:`Watch.bind` binds the new version's checks (its own filter and
canaries) and :meth:`Watch.swap` swaps them in with the engine: an answer is
checked, and its alert named, by the version that generated it, and
``sealtune_model_info`` names the new version. :class:`ServerResponses`
implements the monitor's :class:`~sealtune.monitor.alerts.Responses` port:
revoke an API key in the key store, or withdraw the model (every later
completion answers 503 until the server is restarted).

What this protects against: an extraction attack or a leaking model going
on unanswered, and text reaching metrics or traces (only the request
record's metadata crosses into them). What it does not: under ``block``, the
part of a streamed answer sent before the offending span was seen (the
stream is cut where the span starts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sealtune.monitor.base import (
    AuthDenied,
    E2ERejected,
    MetricsSink,
    ModelServed,
    NullSink,
    Observation,
    RequestDone,
    RequestMeta,
    RequestStarted,
)

if TYPE_CHECKING:
    from sealtune.monitor.runtime import ModelChecks, Monitor
    from sealtune.monitor.streaming import StreamGuard
    from sealtune.monitor.tracing import Tracer
    from sealtune.serve.auth import Authenticator
    from sealtune.serve.logs import RequestRecord

__all__ = ["TEXTS_KEY", "Served", "ServerResponses", "Watch", "model_version"]

TEXTS_KEY = "sealtune.texts"
CHAT = "/v1/chat/completions"


def model_version(*, model_id: str, digest: str, registry: Mapping[str, Any] | None) -> str:
    """The name alerts and metrics give a model version: ``NAME@vN`` for a registry
    version, else ``<model id>@<first 12 hex digits of the digest>``."""
    if registry is not None:
        return f"{registry['name']}@v{int(registry['version'])}"
    return f"{model_id}@{digest[:12]}"


class Served:
    """One model version as the watch sees it: its name and the checks of its answers.

    A completion path holds the :class:`Served` of the engine it runs, so an
    answer is checked, and its alert named, by the version that generated it.

    Args:
        model_version: see :func:`model_version`.
        checks: its detectors (None: no monitor).
    """

    def __init__(self, model_version: str, checks: ModelChecks | None = None) -> None:
        self.model_version, self.checks = model_version, checks

    def guard(self, text: str) -> str | None:
        """The answer to send (redacted), or None to block it."""
        return text if self.checks is None else self.checks.guard(text)[0]

    def stream_guard(self) -> StreamGuard | None:
        """A check of one streamed answer as it is generated (None: nothing to check)."""
        return None if self.checks is None else self.checks.stream_guard()


class ServerResponses:
    """Revokes API keys and withdraws the model when a monitor policy says so.

    Args:
        auth: the server's authenticator (its key store).
        audit: the server's audit ``record`` function (bound by ``create_app`` when None).
    """

    def __init__(self, auth: Authenticator, audit: Callable[..., Any] | None = None) -> None:
        self.auth, self.audit = auth, audit
        self.withdrawn = False
        self.on_withdraw: Callable[[], None] | None = None

    def _audit(self, action: str, **kw: Any) -> None:
        if self.audit is not None:
            self.audit(action, **kw)

    def revoke_key(self, key_id: str, *, detector: str) -> None:
        """Revoke ``key_id`` now (its tokens stop working with it)."""
        if self.auth.store.get(key_id) is None:
            return  # a token subject or anonymous caller: nothing in the store to revoke
        self.auth.store.revoke(key_id, now=datetime.now(UTC))
        self._audit("serve.key_revoked", actor="sealtune-monitor", resource=f"serve-key:{key_id}",
                   details={"key_id": key_id, "detector": detector})

    def withdraw_model(self, *, detector: str) -> None:
        """Answer 503 to every later completion."""
        if self.withdrawn:
            return
        self.withdrawn = True
        self._audit("serve.model_withdrawn", actor="sealtune-monitor", resource="model",
                   details={"detector": detector})
        if self.on_withdraw is not None:
            self.on_withdraw()


class Watch:
    """Metrics, traces and detectors of one server process.

    Args:
        model_version: the version served first (:func:`model_version`).
        metrics: the metrics sink (default: none).
        monitor: the detectors (default: none).
        tracer: OpenTelemetry spans (default: none).
    """

    def __init__(self, *, model_version: str, metrics: MetricsSink | None = None,
                 monitor: Monitor | None = None, tracer: Tracer | None = None) -> None:
        self.metrics = metrics or NullSink()
        self.monitor, self.tracer = monitor, tracer
        self.current = Served(model_version, monitor.checks if monitor is not None else None)
        self._published: ModelServed | None = None

    @property
    def model_version(self) -> str:
        """The version served now."""
        return self.current.model_version

    def bind_audit(self, record: Callable[..., Any]) -> None:
        """Send the monitor's ``monitor.alert`` events to the server's audit queue."""
        if self.monitor is not None and self.monitor.router.audit is None:
            self.monitor.router.audit = record

    def served(self, *, model_id: str, digest: str, engine: str, withdrawn: bool = False) -> None:
        """Publish the served model version (the one published before it, if other, as 0)."""
        event = ModelServed(model_id, digest, engine, withdrawn, version=self.model_version)
        old = self._published
        if old is not None and (old.model_id, old.version, old.digest[:12], old.engine) != (
                model_id, event.version, digest[:12], engine):
            self.metrics.record(replace(old, serving=False))
        self._published = event
        self.metrics.record(event)

    def withdrawn(self) -> None:
        """The policy took the model out of service (``sealtune_model_withdrawn`` 1)."""
        if self._published is not None:
            self.metrics.record(replace(self._published, withdrawn=True))

    def bind(self, model_version: str, resources: Mapping[str, Any]) -> Served:
        """Another version's checks, built from its resources (served from :meth:`swap` on).

        Raises:
            ConfigError: the policy turns on a detector whose resource the version lacks.
        """
        checks = None if self.monitor is None else self.monitor.bind(
            model_version=model_version, resources=resources)
        return Served(model_version, checks)

    def swap(self, served: Served, *, model_id: str, digest: str, engine: str) -> None:
        """Serve ``served`` from now on: the monitor's current checks, the metrics."""
        if self.monitor is not None and served.checks is not None:
            self.monitor.use(served.checks)
        self.current = served
        self.served(model_id=model_id, digest=digest, engine=engine)

    def started(self, route: str) -> None:
        """A completion was admitted (queue depth)."""
        self.metrics.record(RequestStarted(route))

    def denied(self, reason: str) -> None:
        """Authentication, role or rate limit refused a request."""
        self.metrics.record(AuthDenied(reason))

    def e2e_rejected(self, reason: str) -> None:
        """An encrypted request did not open."""
        self.metrics.record(E2ERejected(reason))

    def done(self, rec: RequestRecord, scope: MutableMapping[str, Any], *, arrived: float,
             admitted: bool) -> None:
        """One finished request: metrics, a span, the detectors; the texts are dropped."""
        texts: dict[str, Any] = scope.pop(TEXTS_KEY, None) or {}
        served = texts.get("served")
        served = served if isinstance(served, Served) else self.current  # who answered
        meta = RequestMeta(
            time=arrived, route=rec.route, method=rec.method, status=rec.status,
            caller=rec.caller, model_version=served.model_version, mode=rec.mode,
            stream=rec.stream, latency=rec.latency_ms / 1000.0, ttft=_ttft(texts, arrived),
            prompt_tokens=rec.prompt_tokens, completion_tokens=rec.completion_tokens,
            error=rec.error, filtered=dict(rec.filtered))
        self.metrics.record(RequestDone(meta, admitted))
        if self.tracer is not None:
            self.tracer.record_span(meta)
        if self.monitor is not None:
            self.monitor.observe(Observation(meta, texts.get("prompt"), texts.get("output")),
                                 checks=served.checks)
        texts.clear()

    def close(self) -> None:
        """Stop the detectors, the tracer and this process's metrics."""
        if self.monitor is not None:
            self.monitor.close()
        if self.tracer is not None:
            self.tracer.shutdown()
        self.metrics.close()


def _ttft(texts: dict[str, Any], arrived: float) -> float | None:
    """Seconds from arrival to the first text the completion path sent, if it sent any."""
    first = texts.get("first")
    return max(0.0, float(first) - arrived) if isinstance(first, int | float) else None
