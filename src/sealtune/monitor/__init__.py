"""Watching the deployed model: metrics without content, detectors, alerts into the ledger.

The public surface (loaded lazily: ``import sealtune.monitor`` loads neither
prometheus-client, numpy nor torch until a name that needs them is used):

* metrics: the :class:`MetricsSink` port and its events (:class:`RequestDone`,
  :class:`AuthDenied`, ...), adapters by name in :data:`SINKS`; the Prometheus
  adapter :func:`open_sink` (per process, or shared by several processes
  through a directory) and :func:`serve_metrics` (``/metrics`` on loopback);
* detectors: the :class:`Detector` port, :data:`DETECTORS` (refuses
  duplicates) and :func:`register_detector`; the built-in ones are in
  :mod:`sealtune.monitor.detectors`;
* policy and alerts: :func:`load_policy` / :func:`default_policy`
  (:class:`MonitorPolicy`), :func:`build_monitor` (:class:`Monitor`), the
  :class:`Responses` port the server implements, :func:`read_alerts`;
* traces: :func:`configure_tracing` (OpenTelemetry, content capture off).

The server (:mod:`sealtune.serve`) feeds it one :class:`Observation` per
finished request; this package never imports the server.

What it protects against: training-data extraction and abuse going
unnoticed (each detector says what it catches and misses), and the
monitoring itself becoming a leak: no metric label, alert field, ledger
detail, webhook body or trace attribute can hold prompt or response text.
What it does not: stop a request before it is answered (except the
redaction or blocking of regurgitated training text and canaries, in whole
and streamed answers, and the policy's responses, which act after an
alert), or see attacks spread over many keys or long periods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.monitor.alerts import AlertRecord, AlertRouter, Responses, read_alerts
    from sealtune.monitor.base import (
        SINKS,
        Alert,
        AlertRaised,
        AuthDenied,
        E2ERejected,
        MetricEvent,
        MetricsSink,
        ModelServed,
        NullSink,
        Observation,
        RequestDone,
        RequestMeta,
        RequestStarted,
    )
    from sealtune.monitor.detectors.base import (
        DETECTORS,
        Detector,
        DetectorContext,
        DetectorSpec,
        register_detector,
    )
    from sealtune.monitor.policy import MonitorPolicy, default_policy, load_policy
    from sealtune.monitor.prometheus import (
        MetricsListener,
        PrometheusSink,
        open_sink,
        serve_metrics,
    )
    from sealtune.monitor.runtime import Monitor, build_monitor
    from sealtune.monitor.tracing import configure_tracing

__all__ = [
    "DETECTORS",
    "SINKS",
    "Alert",
    "AlertRaised",
    "AlertRecord",
    "AlertRouter",
    "AuthDenied",
    "Detector",
    "DetectorContext",
    "DetectorSpec",
    "E2ERejected",
    "MetricEvent",
    "MetricsListener",
    "MetricsSink",
    "ModelServed",
    "Monitor",
    "MonitorPolicy",
    "NullSink",
    "Observation",
    "PrometheusSink",
    "RequestDone",
    "RequestMeta",
    "RequestStarted",
    "Responses",
    "build_monitor",
    "configure_tracing",
    "default_policy",
    "load_policy",
    "open_sink",
    "read_alerts",
    "register_detector",
    "serve_metrics",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("AlertRecord", "AlertRouter", "Responses", "read_alerts"),
                    "sealtune.monitor.alerts"),
    **dict.fromkeys(("SINKS", "Alert", "AlertRaised", "AuthDenied", "E2ERejected",
                     "MetricEvent", "MetricsSink", "ModelServed", "NullSink", "Observation",
                     "RequestDone", "RequestMeta", "RequestStarted"), "sealtune.monitor.base"),
    **dict.fromkeys(("DETECTORS", "Detector", "DetectorContext", "DetectorSpec",
                     "register_detector"), "sealtune.monitor.detectors"),
    **dict.fromkeys(("MonitorPolicy", "default_policy", "load_policy"),
                    "sealtune.monitor.policy"),
    **dict.fromkeys(("MetricsListener", "PrometheusSink", "open_sink", "serve_metrics"),
                    "sealtune.monitor.prometheus"),
    **dict.fromkeys(("Monitor", "build_monitor"), "sealtune.monitor.runtime"),
    "configure_tracing": "sealtune.monitor.tracing",
})
