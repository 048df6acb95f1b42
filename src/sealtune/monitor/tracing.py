"""Optional OpenTelemetry traces of finished requests, with content capture off for good.

:func:`configure_tracing` builds a tracer provider (OpenTelemetry SDK) with
one span processor; :func:`record_span` turns a
:class:`~sealtune.monitor.base.RequestMeta` into one span whose attributes
come from a fixed allow-list (:data:`ATTRIBUTES`): route, method, status,
error class, mode, stream, latency, token counts, model version. There is no
code path that sets a span attribute from a prompt or a response, and the
GenAI content-capture switch
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) is refused when set
to anything but false: sealtune has no way to turn content capture on.

What this protects against: prompt or response text in traces, including
through an instrumentation library that honours the content-capture
variable. What it does not: the exporter's transport (use a local
collector), or other instrumentations an operator adds to the process.
"""

from __future__ import annotations

import os
from typing import Any

from sealtune.errors import ConfigError
from sealtune.monitor.base import RequestMeta, safe_label

__all__ = ["ATTRIBUTES", "CAPTURE_ENV", "Tracer", "configure_tracing"]

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
#: Every span attribute sealtune sets (names follow the HTTP and GenAI conventions).
ATTRIBUTES = (
    "http.route", "http.request.method", "http.response.status_code", "error.type",
    "sealtune.mode", "sealtune.stream", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.request.model",
)
_HINT = "pip install 'sealtune[monitor]'"


def _refuse_capture() -> None:
    value = os.environ.get(CAPTURE_ENV, "").strip().lower()
    if value not in ("", "false", "0", "no", "off"):
        raise ConfigError(f"${CAPTURE_ENV} asks for message content in traces",
                          hint="sealtune never records prompt or response text in traces: "
                               f"unset {CAPTURE_ENV} or set it to false")
    os.environ[CAPTURE_ENV] = "false"  # instrumentations loaded later see it off


class Tracer:
    """Records one span per finished request (attributes from :data:`ATTRIBUTES` only).

    Args:
        provider: an OpenTelemetry SDK ``TracerProvider``.
    """

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("sealtune.serve")

    def record_span(self, meta: RequestMeta) -> None:
        """One span for the request, timed from its arrival to its end."""
        start = int(meta.time * 1e9)
        attrs: dict[str, Any] = {
            "http.route": safe_label(meta.route), "http.request.method": safe_label(meta.method),
            "http.response.status_code": int(meta.status), "sealtune.mode": safe_label(meta.mode),
            "sealtune.stream": bool(meta.stream),
            "gen_ai.request.model": safe_label(meta.model_version),
        }
        if meta.error is not None:
            attrs["error.type"] = safe_label(meta.error)
        if meta.prompt_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = int(meta.prompt_tokens)
        if meta.completion_tokens is not None:
            attrs["gen_ai.usage.output_tokens"] = int(meta.completion_tokens)
        span = self._tracer.start_span(f"{safe_label(meta.method)} {safe_label(meta.route)}",
                                       start_time=start, attributes=attrs)
        span.end(end_time=start + int(max(0.0, meta.latency) * 1e9))

    def shutdown(self) -> None:
        """Export what is buffered and stop."""
        self.provider.shutdown()


def configure_tracing(*, exporter: Any = None, service_name: str = "sealtune-serve") -> Tracer:
    """A tracer with content capture off; spans go to ``exporter`` (default: OTLP if installed).

    Args:
        exporter: an OpenTelemetry ``SpanExporter`` (tests pass an in-memory one).
        service_name: the ``service.name`` resource attribute.

    Raises:
        ConfigError: the SDK is missing, no exporter is available, or
            ``$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for content.
    """
    _refuse_capture()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigError("traces need opentelemetry-sdk", hint=_HINT) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise ConfigError("--otel-traces needs an OTLP exporter",
                              hint="pip install opentelemetry-exporter-otlp-proto-http") from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracer(provider)
