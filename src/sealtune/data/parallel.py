"""``data ingest --workers N``: PII detection on N local processes, the same outputs as one.

Detection (the recognizers) depends on one text only; everything
dataset-wide (screening, the redaction dictionary, record ids, redaction,
sealing) depends on every record and on their order. So, as the ``ray``
executor does (:mod:`sealtune.data.executors`), ``N > 1`` reads the input
once before the stage's passes, sends each distinct text (record ids,
messages, kept text fields) in batches to a pool of ``N`` worker processes
and keeps the entities they find, keyed by a hash of the text. The stage
then runs exactly as with one worker, with a
:class:`~sealtune.data.executors.PrecomputedAnalyzer` that answers from those
results (a text it was not given is analysed in this process). Each worker
builds the policy's own analyzer, so the entities are the ones this process
would find: the sealed records, manifest counts, BOM and findings are those
of one worker (tests/integration/test_ingest_workers.py checks them after
decryption).

Workers are started with ``spawn``: a fresh interpreter that inherits none
of this process's memory (unwrapped keys, the dataset secret) and receives
only record text over a pipe; inside the data sandbox they run in the same
sandbox. What this protects against: nothing new, it is a speed option.
What it does not change: the texts the workers see are the ones this
process sees, on the same host, under the same user.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from sealtune.data.detections import kept_texts
from sealtune.data.executors import CHUNK, PrecomputedAnalyzer, chunks
from sealtune.data.formats import Opener, read_records
from sealtune.errors import UsageError

if TYPE_CHECKING:
    from sealtune.data.pii import Analyzer, Entity
    from sealtune.data.policy import Policy

__all__ = ["MAX_WORKERS", "check_workers", "detect_on_processes"]

#: More would only queue on a host's cores (and each worker holds an analyzer).
MAX_WORKERS = 256
#: Texts per task sent to a worker (amortises the pipe; small enough to balance).
_BATCH = 256
_ANALYZER: list[Analyzer] = []  # in a worker: the policy's analyzer, built once


def check_workers(workers: int) -> int:
    """``workers`` if it is a usable worker count.

    Raises:
        UsageError: not an integer from 1 to :data:`MAX_WORKERS`.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) \
            or not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be an integer from 1 to {MAX_WORKERS}, "
                         f"not {workers!r}", hint="use the number of cores to give the ingest")
    return workers


def _start(policy: Policy) -> None:
    _ANALYZER.append(policy.analyzer())


def _detect(texts: list[str]) -> list[list[Entity]]:
    analyzer = _ANALYZER[0]
    return [analyzer.analyze(text) for text in texts]


def _texts(path: Path, *, format: str | None, text_field: str | None,
           keep_fields: frozenset[str], opener: Opener | None) -> Iterator[str]:
    # Malformed lines are the stage's business (its own passes report or skip them).
    with read_records(path, format=format, text_field=text_field, on_error="skip",
                      opener=opener) as stream:
        for record in stream:
            yield record.id
            yield from (m.content for m in record.messages)
            yield from (record.extra[k] for k in kept_texts(record, keep_fields))


def detect_on_processes(path: Path, policy: Policy, *, workers: int, format: str | None,
                        text_field: str | None, opener: Opener | None,
                        chunk: int = CHUNK) -> PrecomputedAnalyzer:
    """Detect PII in every distinct text of ``path`` on ``workers`` processes.

    Returns:
        The analyzer answering from those entities (the policy's own for any other text).
    """
    texts = _texts(path, format=format, text_field=text_field,
                   keep_fields=frozenset(policy.keep_fields), opener=opener)
    found: dict[bytes, list[Entity]] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=check_workers(workers), mp_context=context,
                             initializer=_start, initargs=(policy,)) as pool:
        for part in chunks(texts, chunk):
            batches = [part[i:i + _BATCH] for i in range(0, len(part), _BATCH)]
            results = pool.map(_detect, [[t for _, t in b] for b in batches])
            for batch, entities in zip(batches, results, strict=True):
                found.update(zip((k for k, _ in batch), entities, strict=True))
    return PrecomputedAnalyzer(policy.analyzer(), found)
