"""The server's side of monitoring: feeds :mod:`sealtune.monitor` and carries out its responses.

:class:`Watch` is what the app holds: the metrics sink, the optional tracer
and the monitor. The access-log middleware hands it each finished request
(:meth:`Watch.done`: the request record and, for chat completions, the
prompt and output kept in the request scope for the duration of the
request); the completion path asks it to check an answer before it is sent
(:meth:`Watch.guard`: regurgitated training text or a canary is redacted,
or the answer blocked, as the policy says; :meth:`Watch.stream_guard` does
the same for a streamed answer as it is generated). :class:`ServerResponses`
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

from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import ConfigError
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
    from sealtune.keys.service import KeyService
    from sealtune.monitor.runtime import Monitor
    from sealtune.monitor.streaming import StreamGuard
    from sealtune.monitor.tracing import Tracer
    from sealtune.serve.auth import Authenticator
    from sealtune.serve.logs import RequestRecord
    from sealtune.serve.model import ModelFiles

__all__ = ["TEXTS_KEY", "ServerResponses", "Watch", "job_canary_secrets", "open_resources"]

TEXTS_KEY = "sealtune.texts"
CHAT = "/v1/chat/completions"


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
        model_version: ``<model id>@<first 12 hex digits of the digest>``.
        metrics: the metrics sink (default: none).
        monitor: the detectors (default: none).
        tracer: OpenTelemetry spans (default: none).
    """

    def __init__(self, *, model_version: str, metrics: MetricsSink | None = None,
                 monitor: Monitor | None = None, tracer: Tracer | None = None) -> None:
        self.model_version = model_version
        self.metrics = metrics or NullSink()
        self.monitor, self.tracer = monitor, tracer

    def bind_audit(self, record: Callable[..., Any]) -> None:
        """Send the monitor's ``monitor.alert`` events to the server's audit queue."""
        if self.monitor is not None and self.monitor.router.audit is None:
            self.monitor.router.audit = record

    def served(self, *, model_id: str, digest: str, engine: str, withdrawn: bool = False) -> None:
        """Publish the served model version."""
        self.metrics.record(ModelServed(model_id, digest, engine, withdrawn))

    def started(self, route: str) -> None:
        """A completion was admitted (queue depth)."""
        self.metrics.record(RequestStarted(route))

    def denied(self, reason: str) -> None:
        """Authentication, role or rate limit refused a request."""
        self.metrics.record(AuthDenied(reason))

    def e2e_rejected(self, reason: str) -> None:
        """An encrypted request did not open."""
        self.metrics.record(E2ERejected(reason))

    def guard(self, text: str) -> str | None:
        """The answer to send (redacted), or None to block it."""
        if self.monitor is None:
            return text
        return self.monitor.guard(text)[0]

    def stream_guard(self) -> StreamGuard | None:
        """A check of one streamed answer as it is generated (None: nothing to check)."""
        return None if self.monitor is None else self.monitor.stream_guard()

    def done(self, rec: RequestRecord, scope: MutableMapping[str, Any], *, arrived: float,
             admitted: bool) -> None:
        """One finished request: metrics, a span, the detectors; the texts are dropped."""
        texts: dict[str, Any] = scope.pop(TEXTS_KEY, None) or {}
        meta = RequestMeta(
            time=arrived, route=rec.route, method=rec.method, status=rec.status,
            caller=rec.caller, model_version=self.model_version, mode=rec.mode,
            stream=rec.stream, latency=rec.latency_ms / 1000.0, ttft=_ttft(texts, arrived),
            prompt_tokens=rec.prompt_tokens, completion_tokens=rec.completion_tokens,
            error=rec.error, filtered=dict(rec.filtered))
        self.metrics.record(RequestDone(meta, admitted))
        if self.tracer is not None:
            self.tracer.record_span(meta)
        if self.monitor is not None:
            self.monitor.observe(Observation(meta, texts.get("prompt"), texts.get("output")))
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


def open_resources(files: ModelFiles | None, *, canaries: Path | None,
                   planted: list[str] | None = None) -> dict[str, Any]:
    """What detectors need from the model and the release gate: the filter, the canaries.

    Args:
        files: the served model's files (its sealed ``regurgitation.bloom``).
        canaries: a file of canary secrets, one per line (canaries planted elsewhere).
        planted: the secrets of the canaries planted by the model's own training job
            (:func:`job_canary_secrets`); the list is emptied once hashed.

    Raises:
        IntegrityError: the sealed filter failed its check, or is not a filter.
        ConfigError: the canaries file cannot be read.
    """
    from sealtune.core.bloom import BloomFilter
    from sealtune.monitor.detectors.regurgitation import FILTER_FILE, CanarySet

    out: dict[str, Any] = {}
    if files is not None and FILTER_FILE in files.names():
        out["training_filter"] = BloomFilter.from_bytes(files.read(FILTER_FILE))
    secrets = list(planted or [])
    if planted is not None:
        planted.clear()
    if canaries is not None:
        try:
            lines = canaries.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            raise ConfigError(f"cannot read the canaries file {canaries}",
                              hint="one canary secret per line, UTF-8") from None
        secrets += [line.strip() for line in lines if line.strip()]
        lines.clear()
    if secrets:
        out["canaries"] = CanarySet(secrets)
        secrets.clear()
    return out


def job_canary_secrets(root: Path, keys: KeyService, model: str) -> list[str]:
    """The secrets of the canaries the workspace model ``model``'s training job planted.

    ``train --canaries N`` seals the job's canary seed under its KEKs and
    names it in ``model.json`` (counts and a file name, no secret); the
    release gate and this server rebuild the same canaries from it, so an
    answer carrying one is a ``canary_hit`` without anyone writing the
    secrets down. Empty for a model without canaries, or not in the workspace.

    Raises:
        IntegrityError: the sealed seed fails its check.
        ConfigError: ``model.json`` names canaries whose sealed seed is missing.
    """
    import json

    from sealtune.assess.canaries import canaries_from_seed
    from sealtune.keys.sealing import open_sealed

    record = root / "models" / model / "model.json"
    if "/" in model or not record.is_file():
        return []
    plan = json.loads(record.read_text("utf-8")).get("canaries")
    if not isinstance(plan, dict) or not isinstance(plan.get("file"), str):
        return []
    seed_file = root / "jobs" / Path(plan["file"]).name
    if not seed_file.is_file():
        raise ConfigError(f"model {model!r} was trained with canaries but their sealed seed "
                          f"{seed_file.name} is missing",
                          hint="restore it into the workspace's jobs directory")
    seed = bytearray(b"".join(open_sealed(seed_file, keys=keys)))
    try:
        planted = canaries_from_seed(seed, count=int(plan["count"]),
                                     repeats=int(plan["repeats"]),
                                     format_name=str(plan.get("format", "pin6")))
    finally:
        seed[:] = bytes(len(seed))
    return [c.secret for c in planted]
