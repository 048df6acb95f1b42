"""``data ingest --workers N``: PII detection on N local processes, the same outputs as one.

Detection (the recognizers) depends on one text only; everything
dataset-wide (screening, the redaction dictionary, record ids, redaction,
sealing) depends on every record and on their order. So, as the ``ray``
executor does (:mod:`sealtune.data.executors`), ``N > 1`` reads the input
once more, in a background thread, sends each distinct text (record ids,
messages, kept text fields) in batches to a pool of ``N`` worker processes
and keeps the entities they find, keyed by a hash of the text. The stage
runs exactly as with one worker, with an analyzer (:class:`Streamed`) that
answers from those results as they arrive, so the stage's first pass
(screening) overlaps with detection; a text it was not given is analysed in
this process. Each worker builds the policy's own analyzer, so the entities
are the ones this process would find: the sealed records, manifest counts,
BOM and findings are those of one worker
(tests/integration/test_ingest_workers.py checks them after decryption).
Detection is spread here; the redaction pass is spread too, by
:mod:`sealtune.data.parallel_redaction`. Screening and sealing stay in this
process, so the speed-up is bounded by their share of the run.

Workers are forked from a fresh interpreter (:mod:`.procs`) that inherits none
of this process's memory (unwrapped keys, the dataset secret) and receive
only record text over a pipe; inside the data sandbox they run in the same
sandbox. What this protects against: nothing new, it is a speed option.
What it does not change: the texts the workers see are the ones this
process sees, on the same host, under the same user.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from sealtune.data import procs
from sealtune.data.detections import kept_texts
from sealtune.data.executors import CHUNK, PrecomputedAnalyzer, chunks, text_key
from sealtune.data.formats import Opener, read_records
from sealtune.errors import SealtuneError, UsageError

if TYPE_CHECKING:
    from sealtune.data.pii import Analyzer, Entity
    from sealtune.data.policy import Policy

__all__ = ["MAX_WORKERS", "Streamed", "check_workers", "close_analyzer", "detect_on_processes"]

#: More would only queue on a host's cores (and each worker holds an analyzer).
MAX_WORKERS = 256
#: Texts per task sent to a worker (amortises the pipe; small enough to balance).
_BATCH = 256
#: Most unread batches in flight (bounds the texts and results held ahead of the stage).
_AHEAD = 64
#: Most results kept, least recently used first out: a text asked again after that
#: (a shared system prompt long unseen) is analysed here, never answered wrongly.
_KEEP = 200_000
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
                        chunk: int = CHUNK) -> Streamed:
    """Detect PII in every distinct text of ``path`` on ``workers`` processes, in the background.

    Returns at once: the returned analyzer answers a text from the workers'
    results, waiting for them as they arrive in input order, so the stage's
    first pass (screening) runs while the workers detect. Close it (or read
    it to the end) to stop the workers.
    """
    texts = _texts(path, format=format, text_field=text_field,
                   keep_fields=frozenset(policy.keep_fields), opener=opener)
    pool = ProcessPoolExecutor(max_workers=check_workers(workers),
                               mp_context=procs.context(),
                               initializer=_start, initargs=(policy,))
    return Streamed(policy.analyzer(), pool, texts, chunk=chunk, ahead=min(8 * workers, _AHEAD))


_END = None


class Streamed(PrecomputedAnalyzer):
    """A :class:`PrecomputedAnalyzer` filled in the background by a process pool.

    A feeder thread sends batches of distinct texts, in input order, to the
    pool (at most ``ahead`` unread batches at a time, which bounds memory);
    :meth:`analyze` reads finished batches in the same order until it has
    the text's entities. At most ``_KEEP`` results are kept (least recently
    used out), so memory does not grow with the data set. A text the feeder
    never sent, or whose result was let go, or after a failed read, is
    analysed here: the answer is always the policy analyzer's.
    """

    def __init__(self, inner: Analyzer, pool: ProcessPoolExecutor, texts: Iterator[str], *,
                 chunk: int, ahead: int) -> None:
        super().__init__(inner, {})
        self._pool = pool
        self._queue: queue.Queue[tuple[list[bytes], Future[list[list[Entity]]]] | None] = \
            queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._done = False
        self._feeder = threading.Thread(target=self._feed, args=(texts, chunk), daemon=True,
                                        name="sealtune-detect-feeder")
        self._feeder.start()

    def _feed(self, texts: Iterator[str], chunk: int) -> None:
        try:
            for part in chunks(texts, chunk):
                for i in range(0, len(part), _BATCH):
                    batch = part[i:i + _BATCH]
                    if self._stop.is_set():
                        return
                    future = self._pool.submit(_detect, [t for _, t in batch])
                    self._queue.put(([k for k, _ in batch], future))
        except Exception:  # noqa: S110  (the stage's own pass reads and reports it)
            pass
        finally:
            self._queue.put(_END)

    def analyze(self, text: str) -> list[Entity]:
        """The entities of ``text``: from the workers (waiting for them), or found here."""
        key = text_key(text)
        while key not in self.found and not self._done:
            item = self._queue.get()
            if item is _END:
                self.close()
                break
            keys, future = item
            try:
                self.found.update(zip(keys, future.result(), strict=True))
                while len(self.found) > _KEEP:
                    del self.found[next(iter(self.found))]  # the least recently used
            except BrokenProcessPool:
                self.close()
                raise SealtuneError("--workers: a detection worker process died (out of "
                                    "memory or killed)",
                                    hint="rerun with fewer --workers, or --workers 1") from None
            except Exception:  # noqa: S112  (a text that fails detection: analysed here, as
                continue  # with one worker, so that it fails alone, as a problem of its line)
        hit = self.found.pop(key, None)
        if hit is None:
            self.misses += 1
            return self.inner.analyze(text)
        self.found[key] = hit  # now the most recently used
        return list(hit)

    def close(self) -> None:
        """Stop feeding and shut the workers down (idempotent)."""
        if self._done:
            return
        self._done = True
        self._stop.set()
        while self._feeder.is_alive():  # unblock a feeder waiting for room in the queue
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._pool.shutdown(wait=True, cancel_futures=True)


def close_analyzer(analyzer: object) -> None:
    """Close ``analyzer`` if it is a :class:`Streamed` one (its workers stop), and stop the
    fork server the workers came from (:mod:`.procs`): an ingest's last step."""
    if isinstance(analyzer, Streamed):
        analyzer.close()
    procs.stop()
