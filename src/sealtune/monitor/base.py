"""What the monitor sees and says: request metadata, observations, alerts, the MetricsSink port.

The server hands the monitor one :class:`Observation` per finished request:
its :class:`RequestMeta` (route, status, caller key id, latency, token
counts: what the request log already holds) and, for chat completions, the
last user message and the generated text, in memory, for the duration of
the call. Detectors answer with :class:`Alert` records, which carry a
detector name, a key id, the model version and numbers, and nothing else:
no field of an alert can hold text from a request or a response.

Metrics go through the :class:`MetricsSink` port, one method taking typed
events (:data:`MetricEvent`); adapters register by name in :data:`SINKS`
(``prometheus`` in :mod:`sealtune.monitor.prometheus`, ``none``).

What this protects against: prompt or response text reaching metrics,
alerts, the ledger or a webhook through a free-form field (there is none;
label values are checked against :func:`safe_label`). What it does not: it
cannot stop a detector from keeping text it was handed; detectors in this
package keep keyed hashes, counts and embeddings only (each says which).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar, runtime_checkable

__all__ = [
    "ANONYMOUS",
    "MODEL_SCOPE",
    "SINKS",
    "Action",
    "Alert",
    "AlertRaised",
    "AuthDenied",
    "E2ERejected",
    "MetricEvent",
    "MetricsSink",
    "ModelServed",
    "NullSink",
    "Observation",
    "Registry",
    "RequestDone",
    "RequestMeta",
    "RequestStarted",
    "safe_label",
]

ANONYMOUS = "anonymous"
#: The ``key_id`` of an alert about the model as a whole, not one caller.
MODEL_SCOPE = "-"
_LABEL = re.compile(r"[A-Za-z0-9_.:/+@-]{1,96}")

T = TypeVar("T")


def safe_label(value: str | None, *, default: str = "other") -> str:
    """``value`` if it is a short identifier (route, reason code, class name), else ``default``.

    Label values come from a closed vocabulary of the server (route
    templates, reason codes, exception class names, entity tags). This is
    the belt to those braces: anything else, which could be text, becomes
    ``default``.
    """
    if value is None:
        return "none"
    return value if _LABEL.fullmatch(value) else default


class Registry(Generic[T]):
    """Entries by name; a second registration of a name is refused.

    Args:
        kind: what the entries are, for messages (``detector``, ``metrics sink``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> None:
        """Add ``entry`` under ``name``.

        Raises:
            ValueError: ``name`` is already registered, or not an identifier.
        """
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", name):
            raise ValueError(f"{self.kind} name {name!r} must be a lower-case identifier")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T | None:
        """The entry named ``name``, or None."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


@dataclass(frozen=True, kw_only=True)
class RequestMeta:
    """What is known about one finished request, without its content.

    Attributes:
        time: when it arrived (seconds since the epoch).
        route: the route template (``-`` when no route matched).
        method: the HTTP method.
        status: the status sent (0 if none was).
        caller: the API key id, or ``anonymous``.
        model_version: ``<model id>@<first 12 hex digits of the digest>``.
        mode: ``plain``, ``e2e`` or ``-``.
        stream: whether the answer was streamed.
        latency: seconds from arrival to the end of the answer.
        ttft: seconds from arrival to the first text sent (completions only).
        prompt_tokens: tokens in (completions only).
        completion_tokens: tokens out (completions only).
        error: a reason code or an exception class name, or None.
        filtered: output-filter replacements by tag.
    """

    time: float
    route: str
    method: str
    status: int
    caller: str
    model_version: str
    mode: str = "-"
    stream: bool = False
    latency: float = 0.0
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    filtered: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """One request as the detectors see it; the texts live only as long as this object.

    Attributes:
        meta: the request's metadata.
        prompt: the last user message of a chat completion, else None.
        output: the generated text (before the output filter), else None.
    """

    meta: RequestMeta
    prompt: str | None = None
    output: str | None = None


@dataclass(frozen=True, kw_only=True)
class Alert:
    """A detector's finding: numbers and identifiers only, never text.

    Attributes:
        detector: the detector's registered name.
        key_id: the API key it is about, or :data:`MODEL_SCOPE` for the model.
        model_version: the model version served.
        score: the detector's statistic (its meaning is the detector's).
        threshold: the value the score reached or passed.
        time: when it was raised (seconds since the epoch).
    """

    detector: str
    key_id: str
    model_version: str
    score: float
    threshold: float
    time: float

    def details(self) -> dict[str, str | float]:
        """The JSON-ready fields (ledger details, webhook body)."""
        return {"detector": self.detector, "key_id": self.key_id,
                "model_version": self.model_version, "score": round(self.score, 6),
                "threshold": round(self.threshold, 6), "time": round(self.time, 3)}


# -- metric events (the MetricsSink port) ------------------------------------------------


@dataclass(frozen=True)
class RequestStarted:
    """A request was admitted (queue depth goes up until its :class:`RequestDone`)."""

    route: str


@dataclass(frozen=True)
class RequestDone:
    """A request finished (every route, every status).

    Attributes:
        meta: the request's metadata.
        admitted: it was counted by a :class:`RequestStarted` (the queue depth goes down).
    """

    meta: RequestMeta
    admitted: bool = False


@dataclass(frozen=True)
class AuthDenied:
    """Authentication, role or rate limit refused a request (a reason code)."""

    reason: str


@dataclass(frozen=True)
class E2ERejected:
    """An end-to-end encrypted request did not open (stale key, replay, integrity)."""

    reason: str


@dataclass(frozen=True)
class AlertRaised:
    """A detector raised an alert and the policy answered with ``action``."""

    detector: str
    action: str


@dataclass(frozen=True)
class ModelServed:
    """A model version served (``serving``: no longer, after a swap), whether it was withdrawn.

    ``version`` is the name alerts give it (``<id>@<digest12>``, ``NAME@vN``).
    """

    model_id: str
    digest: str
    engine: str
    withdrawn: bool = False
    version: str = "-"
    serving: bool = True


MetricEvent = RequestStarted | RequestDone | AuthDenied | E2ERejected | AlertRaised | ModelServed
Action = Literal["alert", "revoke_key", "withdraw_model"]


@runtime_checkable
class MetricsSink(Protocol):
    """Where metric events go (the Prometheus registry, or nowhere)."""

    def record(self, event: MetricEvent) -> None:
        """Count or measure one event; never raises for a well-formed event, never blocks."""
        ...

    def close(self) -> None:
        """This process stops recording (e.g. its live gauges leave the shared view)."""
        ...


class NullSink:
    """Records nothing (metrics off)."""

    def record(self, event: MetricEvent) -> None:
        """Drop the event."""

    def close(self) -> None:
        """Nothing to close."""


SinkFactory = Callable[..., MetricsSink]
#: Metrics sink adapters by name (``prometheus``, ``none``).
SINKS: Registry[SinkFactory] = Registry("metrics sink")
SINKS.register("none", lambda **_: NullSink())
