"""``data ingest --workers N``: the redaction pass on N local processes, the same outputs as one.

Redacting one record depends on that record, its first-pass entities, the
dataset-wide dictionary (complete once the first pass has ended) and the
dataset's redaction keys; nothing depends on another record's redaction. So
with ``N > 1`` the last pass (:func:`~sealtune.data.detections.redaction_pass`)
reads the records in this process, in input order, and sends each wanted one
with its entities, in batches, to a pool of ``N`` processes that redact it
and build its JSON line; the results are taken back in the same order, at
most ``N * 4`` batches ahead, and written and sealed here exactly as
with one worker (each batch's PII counts come back with it and are merged in
order). The sealed records, manifest counts, BOM and findings are
those of ``--workers 1`` (tests/integration/test_ingest_workers.py compares
them after decryption).

Each worker is forked from a fresh interpreter (:mod:`.procs`: none of this
process's memory) and receives, at start, from this process, the policy,
the dataset-wide dictionary and the dataset's redaction secret (the 32
bytes behind pseudonyms and tokens: what the redaction it does needs), then
records over a pipe. It never receives
the keyring, a key-encryption key or a sealing key, and writes nothing.

What this protects against: nothing new, it is a speed option. What it
changes: the redaction secret is in N more processes' memory for the length
of the pass, on the same host, under the same user (inside the data sandbox
when it is on), where the records it protects already are.
"""

from __future__ import annotations

import json
import pickle
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from sealtune.data import procs
from sealtune.data.findings import PiiStats
from sealtune.data.redact import DatasetKeys, Redactor
from sealtune.errors import SealtuneError

if TYPE_CHECKING:
    from sealtune.data.detections import Detections
    from sealtune.data.passes import RecordPasses
    from sealtune.data.pii import Entity
    from sealtune.data.policy import Policy
    from sealtune.data.records import Record
    from sealtune.data.redact import DatasetValues, RedactionOutcome

__all__ = ["redact_on_processes"]

#: Records per task (amortises the pipe; small enough to keep the workers even).
_BATCH = 128
#: Unread batches per worker at most (bounds the records held ahead of the writer).
_AHEAD = 4

Job = tuple["Record", list[list["Entity"]], dict[str, list["Entity"]]]
#: What comes back of one record: its JSON line (None: dropped by the policy), or the error.
Result = tuple["bytes | None", "BaseException | None"]
#: A batch's results, and its PII counts (merged in order: :meth:`PiiStats.merge`).
Done = tuple[list[Result], PiiStats]
_STATE: list[tuple[Redactor, DatasetValues | None]] = []  # in a worker: built once


def _start(policy: Policy, secret: bytes, values: DatasetValues | None) -> None:
    _STATE.append((Redactor(policy, keys=DatasetKeys(secret)), values))


def record_line(outcome: RedactionOutcome) -> bytes | None:
    """The sealed dataset's JSON line of a redacted record (None: the policy dropped it)."""
    if outcome.record is None:
        return None
    return (json.dumps(outcome.record.to_json(), ensure_ascii=False) + "\n").encode()


def _redact(batch: list[Job]) -> Done:
    """Redact a batch; count it as the stage would (the counts merge in order)."""
    redactor, values = _STATE[0]
    stats = PiiStats()
    out: list[Result] = []
    for record, by_message, by_extra in batch:
        try:
            outcome = redactor.redact_record(record, by_message, entities_by_extra=by_extra,
                                             dataset=values)
            line = record_line(outcome)
        except Exception as exc:  # the stage decides (skip the line, or stop): as with one
            out.append((None, _portable(exc)))
            continue
        stats.count(record, by_message, by_extra, outcome)
        out.append((line, None))
    return out, stats


def _portable(exc: Exception) -> BaseException:
    """``exc`` if it survives the pipe, else an error of the same name (never its text)."""
    try:
        back = pickle.loads(pickle.dumps(exc))  # noqa: S301  (our own object, just made)
        if isinstance(back, BaseException):
            return back
    except Exception:  # noqa: S110  (replaced below)
        pass
    return SealtuneError(f"redaction failed in a worker ({type(exc).__name__})")


def redact_on_processes(source: RecordPasses, found: Detections, redactor: Redactor,
                        pii: PiiStats, *, phase: str, wanted: Callable[[Record], bool],
                        workers: int) -> Iterator[tuple[Record, bytes | None]]:
    """:func:`~sealtune.data.detections.redaction_pass` with redaction on ``workers`` processes.

    Raises:
        SealtuneError: a worker process died (out of memory, killed).
    """
    secret = b"" if redactor.keys is None else redactor.keys.secret
    pool = ProcessPoolExecutor(max_workers=workers,
                               mp_context=procs.context(),
                               initializer=_start,
                               initargs=(redactor.policy, secret, found.values))
    pending: deque[tuple[list[Job], Future[Done]]] = deque()
    try:
        batch: list[Job] = []
        for index, record in enumerate(source.records(phase)):
            if not wanted(record):
                continue
            try:
                by_message, by_extra = found.entities(index, record)
            except Exception as exc:
                source.fail(record, "redaction", exc)
                continue
            batch.append((record, by_message, by_extra))
            if len(batch) >= _BATCH:
                pending.append((batch, _submit(pool, batch)))
                batch = []
                while len(pending) > _AHEAD * workers:
                    yield from _results(pending.popleft(), source, pii)
        if batch:
            pending.append((batch, _submit(pool, batch)))
        while pending:
            yield from _results(pending.popleft(), source, pii)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _died() -> SealtuneError:
    return SealtuneError("--workers: a redaction worker process died (out of memory or killed)",
                         hint="rerun with fewer --workers, or --workers 1")


def _submit(pool: ProcessPoolExecutor, batch: list[Job]) -> Future[Done]:
    try:
        return pool.submit(_redact, batch)
    except BrokenProcessPool:
        raise _died() from None


def _results(item: tuple[list[Job], Future[Done]],
             source: RecordPasses, pii: PiiStats) -> Iterator[tuple[Record, bytes | None]]:
    jobs, future = item
    try:
        results, stats = future.result()
    except BrokenProcessPool:
        raise _died() from None
    for (record, _, _), (line, exc) in zip(jobs, results, strict=True):
        if exc is not None:
            source.fail(record, "redaction", exc if isinstance(exc, Exception)
                        else SealtuneError("redaction failed in a worker"))
            continue
        yield record, line
    pii.merge(stats)  # the records counted there, as one count here would have
