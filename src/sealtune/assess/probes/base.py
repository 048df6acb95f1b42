"""The probe port: what a release-gate probe is, what it returns, and the registry.

A probe is two small steps on either side of the sandbox wall:

* :meth:`Probe.measure` runs where the material is (inside the training
  sandbox for anything that loads the model or opens training data; see
  :mod:`sealtune.assess.worker`) and returns :class:`Measured`: scalars and
  rows of scalars (numbers, booleans, ids), never text;
* :meth:`Probe.judge` runs in the gate's own process on those numbers alone:
  statistics (confidence intervals, tests), the thresholds of the policy,
  and the :class:`ProbeResult` with its verdict.

The split is what keeps a report free of data: everything that crosses
from ``measure`` to ``judge`` travels the sandbox's event channel, which
carries scalars and short tokens only (:mod:`sealtune.sandbox.wire`),
and :mod:`sealtune.assess.report` validates the result again.

:data:`PROBES` maps names to probes; :func:`register_probe` refuses a
duplicate name (a probe silently replacing another could turn a check off).

What this protects against: a probe that smuggles text into a report (the
types and the channel refuse it), two probes under one name. What it does
not: a probe's own statistics being right; each probe module says what its
numbers show and what they do not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from sealtune.assess.policy import Run, Setting
    from sealtune.assess.probes.context import ProbeContext

Scalar = int | float | bool | str | None
Verdict = Literal["pass", "fail", "skipped", "off"]
#: What a probe may need; the gate runs it only when all of it is available.
Need = Literal["files", "model", "base", "records", "heldout", "canaries", "dp_claim",
               "findings"]
NEEDS: frozenset[str] = frozenset({"files", "model", "base", "records", "heldout",
                                   "canaries", "dp_claim", "findings"})
#: Ids, names and reasons in results: no spaces, no free text.
TOKEN = re.compile(r"^[A-Za-z0-9_.,:/+=-]{0,128}$")
FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_ROWS = 20_000


def _check_scalar(value: object, where: str) -> Scalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and TOKEN.fullmatch(value):
        return value
    raise ValueError(f"{where}: values must be numbers, booleans or short tokens")


def check_fields(values: Mapping[str, object], where: str) -> dict[str, Scalar]:
    """``values`` with names and values checked (numbers, booleans, tokens only)."""
    out: dict[str, Scalar] = {}
    for key, value in values.items():
        if not FIELD.fullmatch(key):
            raise ValueError(f"{where}: field names must match [a-z][a-z0-9_]*")
        out[key] = _check_scalar(value, f"{where}.{key}")
    return out


@dataclass(frozen=True)
class Measured:
    """What ``measure`` found: summary scalars and rows (one per canary, record, prompt...).

    Attributes:
        probe: the probe's name.
        scalars: summary numbers.
        rows: per-item numbers; an item is named by an ``id`` token, never by its text.
        skipped: why the probe could not measure (a token such as ``no_heldout``), or None.
    """

    probe: str
    scalars: dict[str, Scalar] = field(default_factory=dict)
    rows: tuple[dict[str, Scalar], ...] = ()
    skipped: str | None = None

    def __post_init__(self) -> None:
        check_fields(self.scalars, self.probe)
        if len(self.rows) > MAX_ROWS:
            raise ValueError(f"{self.probe}: more than {MAX_ROWS} rows")
        for row in self.rows:
            check_fields(row, f"{self.probe} row")
        if self.skipped is not None and not TOKEN.fullmatch(self.skipped):
            raise ValueError(f"{self.probe}: the skip reason must be a token")

    def column(self, name: str, *, where: Mapping[str, Scalar] | None = None) -> list[float]:
        """The numeric ``name`` of every row (matching ``where``), missing values left out."""
        out = []
        for row in self.rows:
            if where and any(row.get(k) != v for k, v in where.items()):
                continue
            value = row.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.append(float(value))
        return out


@dataclass(frozen=True)
class ProbeResult:
    """One probe's part of the report: numbers, intervals, thresholds, verdict.

    Attributes:
        name: the probe.
        verdict: ``pass``, ``fail``, ``skipped`` (could not run) or ``off`` (the policy
            turned it off).
        reason: a short fixed phrase of the probe's own (never data) saying why.
        metrics: the figures the verdict rests on, and context.
        intervals: ``name -> (low, high)`` confidence intervals of metrics.
        thresholds: the policy values applied.
        series: number lists for the plots (exposures, ROC points, rates).
        items: per-item rows (canary and record ids with their numbers).
        required: whether the policy required this probe (a required probe that was
            skipped fails the gate).
    """

    name: str
    verdict: Verdict
    reason: str
    metrics: dict[str, Scalar] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    thresholds: dict[str, Scalar] = field(default_factory=dict)
    series: dict[str, tuple[float, ...]] = field(default_factory=dict)
    items: tuple[dict[str, Scalar], ...] = ()
    required: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``report.json``'s ``probes`` entries)."""
        return {"name": self.name, "verdict": self.verdict, "reason": self.reason,
                "required": self.required, "metrics": check_fields(self.metrics, self.name),
                "intervals": {k: [_finite(v[0]), _finite(v[1])]
                              for k, v in self.intervals.items()},
                "thresholds": check_fields(self.thresholds, self.name),
                "series": {k: [float(x) for x in v if math.isfinite(x)]
                           for k, v in self.series.items()},
                "items": [check_fields(i, self.name) for i in self.items]}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def skipped(name: str, reason: str, *, required: bool = False) -> ProbeResult:
    """A result for a probe that did not run (a required one fails the gate)."""
    return ProbeResult(name=name, verdict="skipped", reason=reason, required=required)


class Probe(Protocol):
    """A release-gate probe (see the module docstring)."""

    @property
    def name(self) -> str:
        """Registry name, also the policy's key."""
        ...

    @property
    def needs(self) -> frozenset[str]:
        """What it needs (:data:`NEEDS`): ``files`` probes run in the gate's process,
        the others inside the sandbox."""
        ...

    @property
    def settings(self) -> Mapping[str, Setting]:
        """Its policy keys (besides ``run``), with defaults and bounds."""
        ...

    @property
    def default_run(self) -> Run:
        """``run`` in the default policy."""
        ...

    def measure(self, ctx: ProbeContext, settings: Mapping[str, Any]) -> Measured:
        """Measure (see the module docstring); ``settings`` is the policy's section."""
        ...

    def judge(self, measured: Measured, settings: Mapping[str, Any]) -> ProbeResult:
        """Turn measurements into a verdict against ``settings``' thresholds."""
        ...


#: The probes by name, in the order the report shows them.
PROBES: dict[str, Probe] = {}


def register_probe(probe: Probe) -> None:
    """Add ``probe`` to :data:`PROBES`.

    Raises:
        ValueError: the name is taken or not a token, or ``needs`` names something unknown.
    """
    if not FIELD.fullmatch(probe.name):
        raise ValueError(f"probe name {probe.name!r} must match [a-z][a-z0-9_]*")
    if probe.name in PROBES:
        raise ValueError(f"probe {probe.name!r} is already registered")
    if not probe.needs or not probe.needs <= NEEDS:
        raise ValueError(f"probe {probe.name!r}: needs must be a non-empty subset of "
                         f"{sorted(NEEDS)}")
    PROBES[probe.name] = probe


def runs_in_sandbox(probe: Probe) -> bool:
    """Whether ``probe`` measures inside the sandbox (it loads the model or opens data)."""
    return probe.needs != frozenset({"files"})


def verdict_of(results: Sequence[ProbeResult]) -> tuple[Verdict, list[str]]:
    """The gate's verdict: ``fail`` if any probe failed or a required one was skipped."""
    failed = [r.name for r in results
              if r.verdict == "fail" or (r.verdict == "skipped" and r.required)]
    return ("fail" if failed else "pass"), failed
