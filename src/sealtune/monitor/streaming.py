"""Checking a streamed answer before it leaves: hold back a few tokens, scan, redact or block.

A whole answer is scanned once before it is sent (:meth:`Monitor.guard
<sealtune.monitor.runtime.Monitor.guard>`). A streamed one cannot be: its
beginning would be sent before its end is known. :class:`StreamGuard` sits
between the engine and the client: it tokenises the text as it arrives
(the same split as the training filter, :func:`sealtune.core.bloom.tokens`),
hands each complete token to one :class:`SpanScanner` per detector, and
releases only the tokens every scanner has *decided*: known to be outside
any span the detector reports, or inside one (then the span becomes one
``[REGURGITATED]`` mark, exactly as :func:`redact_spans` does for a whole
answer, or, under ``block``, nothing more is released at all).

How far behind the engine it runs (the cost in time to first token and in
chunk delay): a word still being generated is held until a character after
it arrives, and then

* ``regurgitation`` (windows of ``n`` tokens, alert from ``min_tokens``):
  ``n - 1`` tokens (7 by default) while no window hits; while a run of hits
  is shorter than ``min_tokens`` it is held whole, until it ends (released
  as it was) or reaches ``min_tokens`` (redacted): at most
  ``min_tokens + n - 2`` tokens (30 by default);
* ``canary``: the longest canary's length in tokens, less one.

A word (a run of ASCII letters, digits and ``_``) is one token however long:
an unbroken run is held until it ends (at most the answer's length).

A benign answer is released unchanged, byte for byte; an answer with a
reported span is sent as the same bytes :meth:`Monitor.guard` would send.
Linear in the answer: each token is pushed once and each window hashed once.

What this protects against: a training reply or canary leaving the server
in a streamed answer (its text is withheld before it is sent). What it does
not: text released before a span was known under ``block`` (the answer is
cut where the span starts; what came before it was sent), and everything
the detectors miss (paraphrase, spans under ``min_tokens``; see
:mod:`sealtune.monitor.detectors.regurgitation`).
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["BloomScanner", "CanaryScanner", "SpanScanner", "StreamGuard"]

# The split of sealtune.core.bloom.tokens, with the word alternative named: a word at the
# end of the text so far may still grow.
_TOKEN = re.compile(r"(?P<word>[0-9A-Za-z_]+)|[^\s0-9A-Za-z_]")
Span = tuple[int, int]


class SpanScanner(Protocol):
    """One detector's view of a growing token sequence (indices count from the first token)."""

    def push(self, token: str) -> None:
        """One more complete token (lower-cased)."""
        ...

    def finish(self, text: str) -> None:
        """No more tokens: every token is decided. ``text`` is the whole answer checked (the
        detector may keep its finding for the alert raised after the answer, keyed by it)."""
        ...

    def frontier(self) -> int:
        """Tokens before this index are decided: whether they are in a reported span is final."""
        ...

    def spans(self) -> Sequence[Span]:
        """The reported spans ``[start, end)`` so far (a growing one up to its current end)."""
        ...


class BloomScanner:
    """Covered runs of ``n``-token windows found by ``contains``, reported from ``min_tokens``.

    Gives the spans :func:`~sealtune.monitor.detectors.regurgitation.covered_spans` gives
    for the whole text, keeping the last ``n`` tokens only.
    """

    def __init__(self, contains: Callable[[list[str]], bool], *, n: int, min_tokens: int,
                 done: Callable[[str, Sequence[Span]], None] | None = None) -> None:
        self._contains, self._n, self._min, self._on_done = contains, n, min_tokens, done
        self._recent: deque[str] = deque(maxlen=n)
        self._count = 0
        self._open: Span | None = None  # the covered run the next window could extend
        self._done = False
        self._reported: list[Span] = []

    def push(self, token: str) -> None:
        self._recent.append(token)
        self._count += 1
        if self._count < self._n:
            return
        start = self._count - self._n
        if self._contains(list(self._recent)):
            if self._open is not None and start <= self._open[1]:
                self._open = (self._open[0], start + self._n)
            else:
                self._close()
                self._open = (start, start + self._n)
        elif self._open is not None and start >= self._open[1]:
            self._close()  # no window can reach it any more

    def _close(self) -> None:
        if self._open is not None and self._open[1] - self._open[0] >= self._min:
            self._reported.append(self._open)
        self._open = None

    def finish(self, text: str) -> None:
        self._close()
        self._done = True
        if self._on_done is not None:
            self._on_done(text, self._reported)

    def frontier(self) -> int:
        if self._done:
            return self._count
        if self._open is not None:
            a, e = self._open
            return e if e - a >= self._min else a  # a short run is held until it is decided
        return max(0, self._count - self._n + 1)

    def spans(self) -> Sequence[Span]:
        if self._open is not None and self._open[1] - self._open[0] >= self._min:
            return [*self._reported, self._open]
        return self._reported


class CanaryScanner:
    """Runs of tokens that ``holds`` recognises as a canary, for each length in ``lengths``."""

    def __init__(self, holds: Callable[[list[str]], bool], *, lengths: Sequence[int],
                 done: Callable[[str, Sequence[Span]], None] | None = None) -> None:
        self._holds, self._lengths, self._on_done = holds, sorted(set(lengths)), done
        self._longest = max(self._lengths, default=1)
        self._recent: deque[str] = deque(maxlen=self._longest)
        self._count = 0
        self._done = False
        self._found: list[Span] = []

    def push(self, token: str) -> None:
        self._recent.append(token)
        self._count += 1
        run = list(self._recent)
        for n in self._lengths:
            if n <= len(run) and self._holds(run[len(run) - n:]):
                self._found.append((self._count - n, self._count))

    def finish(self, text: str) -> None:
        self._done = True
        if self._on_done is not None:
            self._on_done(text, sorted(self._found))

    def frontier(self) -> int:
        return self._count if self._done else max(0, self._count - self._longest + 1)

    def spans(self) -> Sequence[Span]:
        return self._found


def _merge(spans: list[Span]) -> list[Span]:
    """Overlapping or touching spans as one, sorted."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class StreamGuard:
    """Checks one streamed answer: :meth:`feed` each piece, then :meth:`flush` once.

    Args:
        scanners: ``(detector name, output mode, scanner)`` for each detector that
            checks outputs, mode ``redact`` or ``block``.
        mark: what a reported span becomes.
        failures: where a scanner's exception is counted by class name (the stream is
            then blocked: an answer that cannot be checked is not sent).

    Attributes:
        blocked: a ``block`` detector reported a span, or a scanner failed: nothing more
            is released.
        hit: the detectors that reported a span so far.
    """

    def __init__(self, scanners: Sequence[tuple[str, str, SpanScanner]], *, mark: str,
                 failures: Counter[str] | None = None) -> None:
        self._scanners = list(scanners)
        self._mark = mark
        self._failures: Counter[str] = Counter() if failures is None else failures
        self._pieces: list[str] = []  # the whole answer, for the scanners' finish (memory only)
        self._text, self._base = "", 0  # the text not yet released, from char offset _base
        self._split_to = 0  # char offset up to which the text is split into complete tokens
        self._bounds: deque[Span] = deque()  # char bounds of the tokens not yet released
        self._next = 0  # index of the first token not yet released
        self._pos = 0  # char offset: everything before it was released or redacted
        self._inside = False  # the last token released was redacted
        self.blocked = False
        self.hit: list[str] = []

    def feed(self, piece: str) -> str:
        """Take the next piece of the answer; return the text that may be sent now."""
        if self.blocked:
            return ""
        self._pieces.append(piece)
        self._text += piece
        return self._step(final=False)

    def flush(self) -> str:
        """The answer ended: return the rest that may be sent."""
        return "" if self.blocked else self._step(final=True)

    def _step(self, *, final: bool) -> str:
        try:
            self._split(final=final)
            if final:
                whole = "".join(self._pieces)
                self._pieces.clear()
                for _, _, scanner in self._scanners:
                    scanner.finish(whole)
            frontier = min(scanner.frontier() for _, _, scanner in self._scanners)
            spans = self._check()
        except Exception as exc:  # fail closed: an answer that cannot be checked is held
            self._failures[type(exc).__name__] += 1
            self.blocked = True
        if self.blocked:
            return ""
        return self._release(frontier, spans, final=final)

    def _split(self, *, final: bool) -> None:
        """Push every complete token of the new text to the scanners."""
        text, base = self._text, self._base
        for match in _TOKEN.finditer(text, self._split_to - base):
            if not final and match.group("word") is not None and match.end() == len(text):
                break  # a word at the end of the text so far may still grow
            token = match.group().lower()
            for _, _, scanner in self._scanners:
                scanner.push(token)
            self._bounds.append((base + match.start(), base + match.end()))
            self._split_to = base + match.end()

    def _check(self) -> list[Span]:
        """The reported spans not yet released, merged; sets :attr:`blocked` and :attr:`hit`."""
        spans: list[Span] = []
        for name, mode, scanner in self._scanners:
            found = scanner.spans()
            if not found:
                continue
            if name not in self.hit:
                self.hit.append(name)
            if mode == "block":
                self.blocked = True
            spans += [s for s in found if s[1] > self._next]
        return _merge(spans)

    def _release(self, frontier: int, spans: list[Span], *, final: bool) -> str:
        """The text of the decided tokens (spans as one mark each); drops it from the buffer."""
        out: list[str] = []
        text, base = self._text, self._base
        upto = self._pos  # the end of the text that may be sent
        queue = iter(spans)
        span = next(queue, None)
        for index in range(self._next, frontier):
            start, end = self._bounds.popleft()
            while span is not None and span[1] <= index:
                span = next(queue, None)
            if span is not None and span[0] <= index:
                if not self._inside:
                    out += [text[self._pos - base:start - base], self._mark]
                    self._inside = True
                self._pos = upto = end  # the span's text is dropped, never sent
            else:
                self._inside, upto = False, end
        self._next = max(self._next, frontier)
        if final:
            upto = base + len(text)
        out.append(text[self._pos - base:upto - base])
        self._pos = upto
        self._text, self._base = text[upto - base:], upto
        return "".join(out)
