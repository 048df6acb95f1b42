"""The monitor of one server process: detectors by policy, a cooldown, alert routing.

:func:`build_monitor` builds every detector the policy enables and an
:class:`~sealtune.monitor.alerts.AlertRouter`; the server calls
:meth:`Monitor.observe` once per finished request. Detectors run inline
(each costs microseconds), except those that work off the request path and
raise their alerts later through the context's ``emit``. A detector that
fails is counted by class name in :attr:`Monitor.failures` and the request
goes on; after an alert, the same detector stays quiet about the same key
for its ``cooldown_seconds`` (one ledger event per incident, not per
request). The detectors that need the served model's resources (its
training filter, its canaries) are held apart per model version
(:class:`ModelChecks`): when the server swaps versions it binds the new
version's and serves them with its engine, while the detectors of callers'
behaviour keep their state.

What this protects against: a broken detector breaking serving, and alert
floods. What it does not: see each detector for what it misses; the
cooldown means a second incident by the same key within it is not
recorded separately.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sealtune.monitor.base import Alert, MetricsSink, NullSink, Observation
from sealtune.monitor.detectors import DETECTORS, Detector, DetectorContext
from sealtune.monitor.detectors.regurgitation import MARK, Scan, redact_spans
from sealtune.monitor.policy import DetectorPolicy, MonitorPolicy
from sealtune.monitor.streaming import SpanScanner, StreamGuard

if TYPE_CHECKING:
    from sealtune.monitor.alerts import AlertRouter, AuditFn, Responses

__all__ = ["ModelChecks", "Monitor", "build_monitor"]

_log = logging.getLogger("sealtune.monitor")


class ModelChecks:
    """The detectors of one model version (its filter, its canaries) and its name in alerts.

    Built by :meth:`Monitor.bind`; an answer is checked by the checks of the version
    that generated it, so a request in flight when the server swaps versions is
    never checked against the other version's filter.
    """

    def __init__(self, model_version: str, detectors: list[Detector],
                 actions: Mapping[str, DetectorPolicy], failures: Counter[str]) -> None:
        self.model_version, self.detectors = model_version, detectors
        self._actions, self._failures = actions, failures

    def guard(self, text: str) -> tuple[str | None, list[str]]:
        """See :meth:`Monitor.guard`."""
        hit: list[str] = []
        for detector in self.detectors:
            scan = getattr(detector, "scan", None)
            mode = self._actions[detector.name].output
            if scan is None or mode == "pass":
                continue
            try:
                found: Scan = scan(text)
            except Exception as exc:  # fail closed: an output that cannot be checked is held
                self._failures[type(exc).__name__] += 1
                return None, [detector.name]
            if not found.spans:
                continue
            hit.append(detector.name)
            if mode == "block":
                return None, hit
            text = redact_spans(text, found.spans)
        return text, hit

    def stream_guard(self) -> StreamGuard | None:
        """See :meth:`Monitor.stream_guard`."""
        scanners: list[tuple[str, str, SpanScanner]] = []
        for detector in self.detectors:
            make: Callable[[], SpanScanner] | None = getattr(detector, "stream_scanner", None)
            mode = self._actions[detector.name].output
            if make is not None and mode != "pass":
                scanners.append((detector.name, mode, make()))
        return StreamGuard(scanners, mark=MARK, failures=self._failures) if scanners else None

    def close(self) -> None:
        """Close the detectors (they keep nothing)."""
        for detector in self.detectors:
            try:
                detector.close()
            except Exception as exc:  # closing the others matters more
                self._failures[type(exc).__name__] += 1


class Monitor:
    """Runs the policy's detectors on every observation and routes their alerts.

    Detectors that need a model resource (:attr:`DetectorSpec.resource`: the
    training filter, the canaries) belong to the model version served
    (:class:`ModelChecks`, replaced by :meth:`use` when the server swaps
    versions); the others watch callers across versions. Every alert names the
    version that generated the answer observed (one raised off the request
    path: the version served then).

    Args:
        policy: the monitor policy (the detectors needing a resource are turned on
            for a version that has it, unless the policy says ``enabled``).
        model_version: the model version served (``<id>@<digest12>``, ``NAME@vN``).
        router: where alerts go.
        resources: that version's resources, by name.
    """

    def __init__(self, policy: MonitorPolicy, *, model_version: str, router: AlertRouter,
                 resources: Mapping[str, Any] | None = None) -> None:
        self.policy, self.router = policy, router
        self.failures: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._quiet: dict[tuple[str, str], float] = {}
        self._actions = {d.name: d for d in policy.detectors}
        self.detectors: list[Detector] = []
        self.checks = ModelChecks(model_version, [], self._actions, self.failures)
        try:
            self.detectors = self._build(policy.enabled(), model_version, {}, shared=True)
            self.checks = self.bind(model_version=model_version, resources=resources or {})
        except BaseException:
            self.close()
            raise

    @property
    def model_version(self) -> str:
        """The model version served now."""
        return self.checks.model_version

    def _build(self, enabled: Iterable[DetectorPolicy], model_version: str,
               resources: Mapping[str, Any], *, shared: bool) -> list[Detector]:
        ctx = DetectorContext(model_version, self._emit, self.policy.max_keys, dict(resources))
        built: list[Detector] = []
        try:
            for d in enabled:
                spec = DETECTORS.get(d.name)
                assert spec is not None  # the policy only names registered detectors
                if (spec.resource is None) == shared:
                    built.append(spec.factory(d.settings, ctx))
        except BaseException:
            ModelChecks(model_version, built, self._actions, self.failures).close()
            raise
        return built

    def bind(self, *, model_version: str, resources: Mapping[str, Any]) -> ModelChecks:
        """The checks of a model version with these resources (not yet served: :meth:`use`).

        Raises:
            ConfigError: the policy turns on a detector whose resource is missing.
        """
        wanted = {spec.resource: name for name in DETECTORS
                  if (spec := DETECTORS.get(name)) is not None and spec.resource}
        policy = self.policy.with_resources(wanted[r] for r in resources if r in wanted)
        return ModelChecks(model_version, self._build(policy.enabled(), model_version,
                                                      resources, shared=False),
                           self._actions, self.failures)

    def use(self, checks: ModelChecks) -> None:
        """Serve ``checks``' version from now on (answers in flight keep their own)."""
        self.checks = checks

    def guard(self, text: str) -> tuple[str | None, list[str]]:
        """Check an answer before it is sent: ``(text to send or None to block, detectors hit)``.

        Runs the served version's detectors that can scan an output
        (``regurgitation``, ``canary``) whose policy ``output`` is not ``pass``;
        spans they find are redacted, or the answer is blocked (None). The alert
        itself comes from :meth:`observe`, which sees the unredacted output.
        """
        return self.checks.guard(text)

    def stream_guard(self) -> StreamGuard | None:
        """A check of one streamed answer as it is generated, like :meth:`guard` for a whole one.

        None when no enabled detector checks outputs (or all are ``pass``):
        the stream then goes out as the engine writes it.
        """
        return self.checks.stream_guard()

    def observe(self, obs: Observation, *, checks: ModelChecks | None = None) -> list[Alert]:
        """Show one finished request to every detector; route and return the alerts raised.

        ``checks``: those of the version that answered (default: the one served now).
        """
        checks = checks or self.checks
        raised: list[Alert] = []
        with self._lock:
            for detector in [*self.detectors, *checks.detectors]:
                try:
                    found = detector.observe(obs)
                except Exception as exc:  # a detector must not break serving; no text leaves
                    self.failures[type(exc).__name__] += 1
                    _log.error("detector failed", extra={"sealtune": {
                        "detector": detector.name, "error": type(exc).__name__}})
                    continue
                raised += [a for a in found if self._admit(a)]
        raised = [replace(a, model_version=checks.model_version) for a in raised]
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
        """An alert from off the request path (thread-safe): it names the version served now."""
        with self._lock:
            admitted = self._admit(alert)
        if admitted:
            self._route(replace(alert, model_version=self.checks.model_version))

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
        ModelChecks(self.model_version, self.detectors, self._actions, self.failures).close()
        self.checks.close()
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
    return Monitor(policy, model_version=model_version, router=router, resources=resources)
