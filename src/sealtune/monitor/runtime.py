"""The monitor of one server process: detectors by policy, a cooldown, alert routing.

:func:`build_monitor` builds every detector the policy enables and an
:class:`~sealtune.monitor.alerts.AlertRouter`; the server calls
:meth:`Monitor.observe` once per finished request. Detectors run inline
(each costs microseconds), except those that work off the request path and
raise their alerts later through the context's ``emit``. A detector that
fails is counted by class name in :attr:`Monitor.failures` and the request
goes on; after an alert, the same detector stays quiet about the same key
for its ``cooldown_seconds`` (one ledger event per incident, not per
request).

What this protects against: a broken detector breaking serving, and alert
floods. What it does not: see each detector for what it misses; the
cooldown means a second incident by the same key within it is not
recorded separately.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sealtune.monitor.base import Alert, MetricsSink, NullSink, Observation
from sealtune.monitor.detectors import DETECTORS, Detector, DetectorContext
from sealtune.monitor.detectors.regurgitation import MARK, Scan, redact_spans
from sealtune.monitor.policy import MonitorPolicy
from sealtune.monitor.streaming import SpanScanner, StreamGuard

if TYPE_CHECKING:
    from sealtune.monitor.alerts import AlertRouter, AuditFn, Responses

__all__ = ["Monitor", "build_monitor"]

_log = logging.getLogger("sealtune.monitor")


class Monitor:
    """Runs the policy's detectors on every observation and routes their alerts.

    Args:
        policy: the monitor policy.
        model_version: the model version served (``<id>@<digest12>``).
        router: where alerts go.
    """

    def __init__(self, policy: MonitorPolicy, *, model_version: str, router: AlertRouter,
                 resources: Mapping[str, Any] | None = None) -> None:
        self.policy, self.model_version, self.router = policy, model_version, router
        self.failures: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._quiet: dict[tuple[str, str], float] = {}
        self._actions = {d.name: d for d in policy.enabled()}
        ctx = DetectorContext(model_version, self._emit, policy.max_keys, dict(resources or {}))
        self.detectors: list[Detector] = []
        try:
            for d in policy.enabled():
                spec = DETECTORS.get(d.name)
                assert spec is not None  # the policy only names registered detectors
                self.detectors.append(spec.factory(d.settings, ctx))
        except BaseException:
            self.close()
            raise

    def guard(self, text: str) -> tuple[str | None, list[str]]:
        """Check an answer before it is sent: ``(text to send or None to block, detectors hit)``.

        Runs the enabled detectors that can scan an output (``regurgitation``,
        ``canary``) whose policy ``output`` is not ``pass``; spans they find
        are redacted, or the answer is blocked (None). The alert itself comes
        from :meth:`observe`, which sees the unredacted output.
        """
        hit: list[str] = []
        for detector in self.detectors:
            scan = getattr(detector, "scan", None)
            mode = self._actions[detector.name].output
            if scan is None or mode == "pass":
                continue
            try:
                found: Scan = scan(text)
            except Exception as exc:  # fail closed: an output that cannot be checked is held
                self.failures[type(exc).__name__] += 1
                return None, [detector.name]
            if not found.spans:
                continue
            hit.append(detector.name)
            if mode == "block":
                return None, hit
            text = redact_spans(text, found.spans)
        return text, hit

    def stream_guard(self) -> StreamGuard | None:
        """A check of one streamed answer as it is generated, like :meth:`guard` for a whole one.

        None when no enabled detector checks outputs (or all are ``pass``):
        the stream then goes out as the engine writes it.
        """
        scanners: list[tuple[str, str, SpanScanner]] = []
        for detector in self.detectors:
            make: Callable[[], SpanScanner] | None = getattr(detector, "stream_scanner", None)
            mode = self._actions[detector.name].output
            if make is not None and mode != "pass":
                scanners.append((detector.name, mode, make()))
        return StreamGuard(scanners, mark=MARK, failures=self.failures) if scanners else None

    def observe(self, obs: Observation) -> list[Alert]:
        """Show one finished request to every detector; route and return the alerts raised."""
        raised: list[Alert] = []
        with self._lock:
            for detector in self.detectors:
                try:
                    found = detector.observe(obs)
                except Exception as exc:  # a detector must not break serving; no text leaves
                    self.failures[type(exc).__name__] += 1
                    _log.error("detector failed", extra={"sealtune": {
                        "detector": detector.name, "error": type(exc).__name__}})
                    continue
                raised += [a for a in found if self._admit(a)]
        for alert in raised:
            self._route(alert)
        return raised

    def _admit(self, alert: Alert) -> bool:
        """False while the detector is cooling down for this key (caller holds the lock)."""
        policy = self._actions.get(alert.detector)
        if policy is None:
            return False
        key = (alert.detector, alert.key_id)
        until = self._quiet.get(key)
        if until is not None and alert.time < until:
            return False
        if len(self._quiet) > 4 * self.policy.max_keys:
            self._quiet = {k: t for k, t in self._quiet.items() if t > alert.time}
        self._quiet[key] = alert.time + policy.cooldown_seconds
        self.alerts[alert.detector] += 1
        return True

    def _route(self, alert: Alert) -> None:
        try:
            self.router.route(alert, self._actions[alert.detector].action)
        except Exception as exc:  # keep serving; the class name says what broke
            self.failures[type(exc).__name__] += 1
            _log.error("alert routing failed", extra={"sealtune": {
                "detector": alert.detector, "error": type(exc).__name__}})

    def _emit(self, alert: Alert) -> None:
        """An alert from off the request path (thread-safe)."""
        with self._lock:
            admitted = self._admit(alert)
        if admitted:
            self._route(alert)

    def flush(self) -> None:
        """Wait for detectors that work in the background (tests, benchmarks)."""
        for detector in self.detectors:
            flush: Callable[[], None] | None = getattr(detector, "flush", None)
            if flush is not None:
                flush()
        if self.router.webhook is not None:
            self.router.webhook.flush()

    def close(self) -> None:
        """Stop every detector and the webhook; forget all state."""
        for detector in self.detectors:
            try:
                detector.close()
            except Exception as exc:  # closing the others matters more
                self.failures[type(exc).__name__] += 1
        self.router.close()


def build_monitor(policy: MonitorPolicy, *, model_version: str, audit: AuditFn | None,
                  metrics: MetricsSink | None = None,
                  responses: Responses | None = None,
                  resources: Mapping[str, Any] | None = None) -> Monitor:
    """The monitor a policy describes, with its router and (if named) its webhook.

    Raises:
        ConfigError: a detector's dependency is missing (e.g. the embedding model).
    """
    from sealtune.monitor.alerts import AlertRouter
    from sealtune.monitor.webhook import Webhook

    webhook = Webhook(policy.webhook) if policy.webhook is not None else None
    router = AlertRouter(audit=audit, metrics=metrics or NullSink(), webhook=webhook,
                         responses=responses)
    resources = dict(resources or {})
    policy = policy.with_resources(_RESOURCE_OF[r] for r in resources if r in _RESOURCE_OF)
    return Monitor(policy, model_version=model_version, router=router, resources=resources)


_RESOURCE_OF = {"training_filter": "regurgitation", "canaries": "canary"}
