"""Poisoning screening: duplicates, conflicts, backdoor triggers and outliers.

One facade, :func:`screen`, runs the registered checks (:data:`CHECKS`) over
canonical records in streaming passes and returns a :class:`ScreenReport`.
Built-in checks, one module each:

- ``exact_duplicate`` / ``near_duplicate`` (:mod:`.duplicates`): copies after
  normalisation; near copies by MinHash LSH over character 3-grams.
- ``conflict`` (:mod:`.conflicts`): one prompt, materially different answers.
- ``trigger`` (:mod:`.trigger`): the backdoor shape, a rare phrase recurring
  in prompts of every topic whose answers are alike or share something rare.
- ``outlier`` (:mod:`.outliers`): length, charset and script outliers.

- ``embedding_outlier`` (:mod:`.embedding`, off by default): semantic
  outliers by k-nearest-neighbour distance in all-MiniLM-L6-v2 space
  (English-centric: weak on Chinese text). Paraphrased duplicates are still
  not detected.

What it protects against: a data supplier (or a compromised pipeline step)
that plants copies, contradicting labels, a trigger-to-payload backdoor of
the published shape (tens to hundreds of poisoned examples), or hidden
characters in a fine-tuning set. What it does not: clean-label attacks
(poison that looks like correct data), triggers planted in fewer than
~``min_support`` (8) records or in a single topic, semantic or paraphrased
poison, and anything an attacker tunes against these exact statistics. Each
module says what it misses. A finding is evidence for review, not proof.

Findings carry record ids, scores and structured reasons, never record text:
the report can be logged and archived. A suspected trigger phrase is shown
only as a fingerprint, its length and a masked preview; the phrase itself is
available from :attr:`TriggerInfo.phrase` in memory, for a reviewer's tool,
and is never serialised by :meth:`ScreenReport.to_json`.

Memory: the checks keep bounded state per record, never record text.
Measured (bench/poison.py) with every default check on: about 6 KB per
record at 100,000 records (peak RSS growth 600 MB), most of it the
near-duplicate check's LSH index (16 band entries per cluster
representative, Python dicts) and signatures, plus the trigger check's phrase counts, which
grow with the vocabulary rather than the record count. About 1M records fit
in 8 GB; beyond that shard the data (near duplicates across shards are then
not seen). Checks that need a second pass
(``conflict``, ``trigger``) get it by iterating ``records`` again, so pass a
re-iterable collection or a zero-argument callable returning a fresh
iterable (e.g. one that re-opens and re-parses the file); a one-shot
iterator is refused when a second pass is needed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sealtune.data.records import Record
from sealtune.data.screen import conflicts, duplicates, embedding, outliers, trigger
from sealtune.data.screen.base import (
    ACTION_RANK,
    CHECKS,
    Action,
    Check,
    CheckConfig,
    CheckSpec,
    Finding,
    Sample,
    SampleBatch,
    register_check,
)
from sealtune.data.screen.trigger import TriggerInfo
from sealtune.errors import ConfigError, UsageError

__all__ = [
    "CHECKS",
    "Action",
    "Check",
    "CheckConfig",
    "CheckSpec",
    "Finding",
    "ScreenReport",
    "TriggerInfo",
    "register_check",
    "screen",
]
_ = (conflicts, duplicates, embedding, outliers, trigger)  # imported to register their checks
Records = Iterable[Record] | Callable[[], Iterable[Record]]


@dataclass
class ScreenReport:
    """The outcome of :func:`screen`.

    Attributes:
        records: how many records were screened.
        findings: every finding, in check order then record order.
        checks: check name -> its action and effective thresholds.
        passes: how many passes over the data were made.
        seconds: wall-clock time of the whole screen.
        triggers: confirmed trigger phrases (phrase kept in memory only).
    """

    records: int
    findings: list[Finding]
    checks: dict[str, dict[str, Any]]
    passes: int
    seconds: float
    triggers: list[TriggerInfo] = field(default_factory=list)

    def decisions(self) -> dict[str, Action]:
        """Record id -> the strongest action among its findings (drop > quarantine > flag)."""
        out: dict[str, Action] = {}
        for f in self.findings:
            prev = out.get(f.record_id)
            if prev is None or ACTION_RANK[f.action] > ACTION_RANK[prev]:
                out[f.record_id] = f.action
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """Check -> action -> number of findings."""
        out: dict[str, Counter[str]] = {}
        for f in self.findings:
            out.setdefault(f.check, Counter())[f.action] += 1
        return {k: dict(v) for k, v in out.items()}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready report: statistics, findings and trigger summaries, no record text."""
        per_action = Counter(self.decisions().values())
        return {
            "records": self.records,
            "passes": self.passes,
            "seconds": round(self.seconds, 3),
            "checks": self.checks,
            "counts": self.counts(),
            "records_by_action": dict(per_action),
            "findings": [f.as_dict() for f in self.findings],
            "triggers": [t.as_dict() for t in self.triggers],
        }


def _resolve(config: Mapping[str, CheckConfig] | None) -> dict[str, tuple[CheckSpec, CheckConfig]]:
    if config is None:
        return {n: (s, CheckConfig()) for n, s in CHECKS.items() if s.default_on}
    unknown = sorted(set(config) - set(CHECKS))
    if unknown:
        raise ConfigError(f"unknown screen check(s) {unknown}",
                          hint=f"known checks: {sorted(CHECKS)}")
    return {name: (CHECKS[name], cfg) for name, cfg in config.items()}


def _passes(records: Records, count: int) -> Iterator[Iterable[Record]]:
    if callable(records):
        for _ in range(count):
            yield records()
        return
    if count > 1 and iter(records) is records:
        raise UsageError(
            "screening needs a second pass over the records, but got a one-shot iterator",
            hint="pass a list, or a zero-argument callable that returns a fresh iterable")
    for _ in range(count):
        yield records


def screen(records: Records, *, config: Mapping[str, CheckConfig] | None = None,
           batch_size: int = 512) -> ScreenReport:
    """Screen records for poisoning and return the findings.

    Args:
        records: the records; a re-iterable collection or a zero-argument
            callable returning a fresh iterable (needed when a check makes
            a second pass: ``conflict`` and ``trigger`` do).
        config: check name -> :class:`CheckConfig`. ``None`` runs every
            default check with action ``flag``; otherwise exactly the named
            checks run. An unknown check or threshold is a :class:`ConfigError`.
        batch_size: records per batch (signatures are computed per batch).

    Raises:
        ConfigError: unknown check, threshold or action.
        UsageError: a one-shot iterator where a second pass is needed, or
            records that change between passes.
    """
    start = time.perf_counter()
    resolved = _resolve(config)
    built = {name: spec.build(cfg) for name, (spec, cfg) in resolved.items()}
    n_passes = max((c.passes for c in built.values()), default=1)
    ids: list[str] = []
    for pass_no, source in enumerate(_passes(records, n_passes)):
        active = [c for c in built.values() if c.passes > pass_no]
        seen = 0
        batch: list[Sample] = []
        for record in source:
            if pass_no == 0:
                ids.append(record.id)
            elif seen >= len(ids) or ids[seen] != record.id:
                raise UsageError("the records changed between screening passes",
                                 hint="pass a stable collection or a callable that re-reads it")
            batch.append(Sample(seen, record))
            seen += 1
            if len(batch) >= batch_size:
                _feed(active, pass_no, batch)
                batch = []
        if batch:
            _feed(active, pass_no, batch)
        if seen != len(ids):
            raise UsageError("the records changed between screening passes",
                             hint="pass a stable collection or a callable that re-reads it")
    findings = [f for c in built.values() for f in c.findings(ids)]
    triggers = [t for c in built.values() for t in getattr(c, "triggers", [])]
    checks = {name: {"action": cfg.action, "thresholds": {**spec.defaults, **cfg.thresholds}}
              for name, (spec, cfg) in resolved.items()}
    return ScreenReport(len(ids), findings, checks, n_passes, time.perf_counter() - start,
                        triggers)


def _feed(checks: list[Check], pass_no: int, samples: list[Sample]) -> None:
    batch = SampleBatch(samples)
    for check in checks:
        check.observe(pass_no, batch)
