"""Where an alert goes: the ledger, a counter, the webhook, and the policy's response.

Every alert becomes, in this order,

1. a ``monitor.alert`` ledger event (actor ``sealtune-monitor``; details:
   detector, key id, model version, score, threshold, time, action);
2. the ``sealtune_monitor_alerts_total{detector, action}`` counter;
3. a webhook POST, when the policy names one (:mod:`.webhook`);
4. the response the policy asks for, through the :class:`Responses` port
   that the server implements: revoke the caller's API key
   (``revoke_key``), or take the model out of service (``withdraw_model``).

:func:`read_alerts` reads the events back for ``sealtune monitor alerts``.

What this protects against: an alert that nobody sees, or that carries
text (an :class:`~sealtune.monitor.base.Alert` has no field for any).
What it does not: ledger events go through the server's bounded audit
queue (see :mod:`sealtune.serve.audit`: a flood can drop events, which the
ledger then records as dropped); a revoked key may have had one more
request in flight, and an attacker with several keys loses one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sealtune.monitor.base import MODEL_SCOPE, Action, Alert, AlertRaised, MetricsSink

if TYPE_CHECKING:
    from sealtune.monitor.webhook import Webhook
    from sealtune.workspace import Workspace

__all__ = ["ACTOR", "AlertRecord", "AlertRouter", "AuditFn", "Responses", "read_alerts"]

ACTOR = "sealtune-monitor"
ALERT_EVENT = "monitor.alert"
#: ``audit(action, *, actor, resource, outcome, details)``, e.g. the server's queued audit sink.
AuditFn = Callable[..., Any]


class Responses(Protocol):
    """What the server does when a policy answers an alert with more than a record."""

    def revoke_key(self, key_id: str, *, detector: str) -> None:
        """Revoke the API key ``key_id`` (and every token issued for it)."""
        ...

    def withdraw_model(self, *, detector: str) -> None:
        """Stop serving the model until the server is restarted."""
        ...


class AlertRouter:
    """Records each alert and carries out the policy's response.

    Args:
        audit: the ledger writer (None: no ledger events, e.g. benchmarks).
        metrics: where the alert counter goes.
        webhook: the webhook, or None.
        responses: the server's responses, or None (then every action only alerts).
    """

    def __init__(self, *, audit: AuditFn | None, metrics: MetricsSink,
                 webhook: Webhook | None = None, responses: Responses | None = None) -> None:
        self.audit, self.metrics = audit, metrics
        self.webhook, self.responses = webhook, responses

    def route(self, alert: Alert, action: Action) -> None:
        """Record ``alert`` everywhere, then respond with ``action``."""
        details: dict[str, Any] = {**alert.details(), "action": action}
        resource = (f"serve-key:{alert.key_id}" if alert.key_id != MODEL_SCOPE
                    else f"model:{alert.model_version}")
        if self.audit is not None:
            self.audit(ALERT_EVENT, actor=ACTOR, resource=resource, outcome="failure",
                       details=details)
        self.metrics.record(AlertRaised(alert.detector, action))
        if self.webhook is not None:
            self.webhook.send({"event": ALERT_EVENT, **details})
        if self.responses is None:
            return
        if action == "revoke_key" and alert.key_id not in (MODEL_SCOPE, "anonymous"):
            self.responses.revoke_key(alert.key_id, detector=alert.detector)
        elif action == "withdraw_model":
            self.responses.withdraw_model(detector=alert.detector)

    def close(self) -> None:
        """Deliver queued webhook posts, then stop."""
        if self.webhook is not None:
            self.webhook.close()


@dataclass(frozen=True)
class AlertRecord:
    """One ``monitor.alert`` ledger event, as ``sealtune monitor alerts`` shows it."""

    seq: int
    time: str
    detector: str
    key_id: str
    model_version: str
    score: float
    threshold: float
    action: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"seq": self.seq, "time": self.time, "detector": self.detector,
                "key_id": self.key_id, "model_version": self.model_version,
                "score": self.score, "threshold": self.threshold, "action": self.action}


def read_alerts(ws: Workspace, *, since: datetime | None = None,
                limit: int | None = None) -> list[AlertRecord]:
    """The ``monitor.alert`` events of the workspace's ledger, oldest first.

    Args:
        ws: an open workspace.
        since: only events at or after this time.
        limit: at most this many (the oldest ones after ``since``).
    """
    out = []
    for entry in ws.ledger.entries(action=ALERT_EVENT, since=since, limit=limit):
        d = entry.details
        out.append(AlertRecord(
            seq=entry.seq, time=_iso(entry.time), detector=str(d.get("detector", "?")),
            key_id=str(d.get("key_id", "?")), model_version=str(d.get("model_version", "?")),
            score=_float(d.get("score")), threshold=_float(d.get("threshold")),
            action=str(d.get("action", "?"))))
    return out


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    return str(value)
