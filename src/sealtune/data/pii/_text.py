"""Helpers shared by the recognizers: number runs, context words, overlaps.

Number runs are found once per text and shared by the CN_ID, BANK_CARD and
PHONE recognizers (an LRU cache keyed by the text itself). A run is a
maximal sequence of digit groups separated by single spaces or dashes, so a
number split as ``6222 0202 0000 1234 567`` or ``138-0013-8000`` is one
run; a recognizer that rejects the whole run may try contiguous sub-runs
that start and end on group boundaries (never inside an unseparated group:
``202312011380013800012`` holds no phone number).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from operator import attrgetter, le, lt
from typing import NamedTuple

from sealtune.data.pii.base import Entity

# ASCII-only word boundaries: in mixed text a Chinese character next to a
# digit is a boundary (``手机13800138000``), a Latin letter is not.
# Starts with a plain \d so that re scans fast; a "+" or "(" in front is
# picked up in code.
_RUN = re.compile(r"\d[\d \-()]{5,}\d(?:[Xx](?![0-9A-Za-z]))?")
_GROUP = re.compile(r"\d+[Xx]?")
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


#: A candidate inside a run: (start, end, digits), digits without separators.
Span = tuple[int, int, str]


class Run(NamedTuple):
    """A run of digit groups.

    Attributes:
        start: start of the run, including a leading ``+`` or ``(``.
        end: end of the last digit group.
        first: start of the first digit group.
        digits: all digits of the run, separators removed.
        spans: contiguous ranges of up to six groups, longest first (for a run
            of one group, just that group): the candidates recognizers try.

    A named tuple rather than a frozen dataclass: one is built per digit run
    of every text, and a tuple is several times cheaper to create.
    """

    start: int
    end: int
    first: int
    digits: str
    spans: tuple[Span, ...]


#: Span templates are cached by the run's shape: ASCII digits as "0",
#: separators (and a final X) as written, so "138 0013 8000" -> "000 0000 0000".
_SHAPE = str.maketrans("123456789", "000000000")
_NO_SEPARATORS = str.maketrans("", "", " -()")


@lru_cache(maxsize=16)
def number_runs(text: str) -> tuple[Run, ...]:
    """Runs of at least 7 digits in ``text`` with alphanumeric-free borders."""
    runs: list[Run] = []
    n = len(text)
    for m in _RUN.finditer(text):
        start, end = m.span()
        # No letter or digit may touch the run, nor a dot with a digit beyond
        # it (part of an IP address, a version, a decimal amount).
        if start:
            before = text[start - 1]
            if before in _ALNUM or (before == "." and start > 1 and text[start - 2].isdigit()):
                continue
        if end < n:
            after = text[end]
            if after in _ALNUM or (after == "." and end + 1 < n and text[end + 1].isdigit()):
                continue
        raw = m.group()
        lead = start  # a "+" or "(" in front belongs to the number (and is its border)
        if start and text[start - 1] in "+(":
            lead = start - 2 if text[max(0, start - 2):start] == "(+" else start - 1
        if raw.isdigit():  # the common case: one unseparated group
            runs.append(Run(lead, end, start, raw, ((start, end, raw),)))
            continue
        digits = raw.translate(_NO_SEPARATORS)  # the groups (digits, a final X) joined
        if len(digits) >= 7:
            spans = tuple([(start + a, start + b, digits[c:d])
                           for a, b, c, d in _span_template(raw.translate(_SHAPE))])
            runs.append(Run(lead, end, start, digits, spans))
    return tuple(runs)


@lru_cache(maxsize=4096)
def _span_template(shape: str, max_groups: int = 6) -> tuple[tuple[int, int, int, int], ...]:
    """A run's spans for its shape: (start, end) in the run, (from, to) in its digits.

    Contiguous ranges of up to ``max_groups`` groups with 7+ digits, longest
    first, then by start.
    """
    groups = [m.span() for m in _GROUP.finditer(shape)]
    offsets = [0]  # where each group starts in the run's digits
    for start, end in groups:
        offsets.append(offsets[-1] + end - start)
    spans = [(offsets[i] - offsets[j + 1], i, j)
             for i in range(len(groups)) for j in range(i, min(len(groups), i + max_groups))
             if offsets[j + 1] - offsets[i] >= 7]
    spans.sort()  # by length (longest first), then start: (-len, i) pairs are unique
    return tuple((groups[i][0], groups[j][1], offsets[i], offsets[j + 1]) for _, i, j in spans)


# Up to this many candidates, each is tested against every kept one (cheaper
# for the handful a text usually has); beyond, a claim map keeps it linear.
_FEW = 16


class _Taken:
    """The characters claimed so far, as one byte per character.

    Testing a span against every kept one made overlap resolution quadratic
    in the number of candidates (10 s for 5,000 ``api_key:`` lines in one
    field); a claim map answers each test with one ``bytearray.find`` over the
    span itself. Candidates come from linear scans, so their total length is
    a small multiple of the text's.
    """

    __slots__ = ("_base", "_map")

    def __init__(self, start: int, end: int) -> None:
        self._base = start
        self._map = bytearray(end - start)

    def claim(self, start: int, end: int) -> bool:
        """Claim ``[start, end)`` if it is not empty and no character of it is claimed yet."""
        lo, hi = start - self._base, end - self._base
        if hi <= lo or self._map.find(1, lo, hi) != -1:
            return False
        self._map[lo:hi] = b"\x01" * (hi - lo)
        return True


def pick_non_overlapping(found: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Keep the best-scoring, then longest, of overlapping (start, end, score)."""
    if len(found) < 2:
        return found
    ranked = sorted(found, key=lambda f: (-f[2], f[0] - f[1], f[0]))
    if len(found) <= _FEW:
        kept: list[tuple[int, int, float]] = []
        for f in ranked:
            if f[0] < f[1] and all(f[1] <= s or f[0] >= e for s, e, _ in kept):
                kept.append(f)
        return kept
    taken = _Taken(min(f[0] for f in found), max(f[1] for f in found))
    return [f for f in ranked if taken.claim(f[0], f[1])]


_CLAUSE_END = re.compile(r"[。，,；;！？!?\n]|\.\s")
# The same, found last: greedy ``.*`` backs off from the end to the last clause
# end, so one match replaces collecting every clause end in the window.
_LAST_CLAUSE_END = re.compile(r"(?s:.*)(?:[。，,；;！？!?\n]|\.\s)")


def has_context(text: str, start: int, end: int, words: Sequence[str], *,
                before: int = 24, after: int = 8) -> bool:
    """True if a context word (lower-case) occurs near ``text[start:end]``.

    The window stays inside the clause: it stops at a comma, full stop or
    line break, so "卡号6222…，订单号2023…" gives the order number no card context.
    """
    window = context_window(text, start, end, before=before, after=after)
    return any_word(tuple(words)).search(window) is not None


@lru_cache(maxsize=256)
def any_word(words: tuple[str, ...]) -> re.Pattern[str]:
    """A regex that finds any of ``words`` in a string (none: it never matches).

    One search costs a fifth of testing each word with ``in`` on a window
    with Chinese in it (each ASCII word is first widened to the window's
    character size).
    """
    return re.compile("|".join(map(re.escape, words)) if words else "(?!)")


def context_window(text: str, start: int, end: int, *, before: int = 24, after: int = 8) -> str:
    """The lower-cased clause around ``text[start:end]`` that :func:`has_context` searches.

    For a recognizer that tests several word lists on one span.
    """
    lo = max(0, start - before)
    last = _LAST_CLAUSE_END.match(text, lo, start)
    head = text[last.end() if last else lo:start]
    stop = _CLAUSE_END.search(text, end, end + after) if after else None
    tail = text[end:stop.start() if stop else end + after]
    return (head + " " + tail).lower()


_BY_POSITION = attrgetter("start", "end")
_START, _END = attrgetter("start"), attrgetter("end")


def resolve_overlaps(entities: list[Entity]) -> list[Entity]:
    """Drop entities overlapping a better one (higher score, then longer).

    The result is sorted by start. Identical spans of different types keep
    only the best, so a redactor never sees two claims on one character.
    Empty spans (a plug-in's mistake) are dropped: they cover nothing.
    """
    if len(entities) < 2:
        return [e for e in entities if e.start < e.end]
    ordered = sorted(entities, key=_BY_POSITION)
    if not all(map(lt, map(_START, ordered), map(_END, ordered))):
        ordered = [e for e in ordered if e.start < e.end]
    if all(map(le, map(_END, ordered), map(_START, ordered[1:]))):
        return ordered  # the common case: nothing overlaps (each ends before the next starts)
    ranked = sorted(ordered, key=lambda e: (-e.score, e.start - e.end, e.start))
    kept: list[Entity] = []
    if len(ordered) <= _FEW:
        for e in ranked:
            if all(e.end <= k.start or e.start >= k.end for k in kept):
                kept.append(e)
    else:
        taken = _Taken(ordered[0].start, max(map(_END, ordered)))
        kept = [e for e in ranked if taken.claim(e.start, e.end)]
    kept.sort(key=_BY_POSITION)
    return kept


# Keywords (lower case) that recognizers look for: context words, cues,
# credential names. All are found in one pass over the lower-cased text by a
# trie-shaped regex (a flat alternation of 60 literals costs twice as much).
_KEYWORDS: set[str] = set()


def register_keywords(words: Iterable[str]) -> None:
    """Add keywords to the shared one-pass scan (see :func:`keyword_hits`)."""
    _KEYWORDS.update(w.lower() for w in words)
    _keyword_regex.cache_clear()
    keyword_hits.cache_clear()


def trie_regex(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, with common prefixes factored out."""
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[0], []).append(word[1:])
    parts = []
    for first, rests in sorted(by_first.items()):
        optional = "" in rests
        rests = [r for r in rests if r]
        if not rests:
            parts.append(re.escape(first))
            continue
        parts.append(re.escape(first) + "(?:" + trie_regex(rests) + ")" + ("?" if optional else ""))
    return "|".join(parts)


@lru_cache(maxsize=1)
def _keyword_regex() -> re.Pattern[str]:
    return re.compile(trie_regex(sorted(_KEYWORDS)))


@lru_cache(maxsize=16)
def keyword_hits(text: str) -> dict[str, list[int]]:
    """Registered keywords found in ``text`` (case-insensitive) -> start offsets."""
    low = text.lower()
    if len(low) != len(text):  # lower() changed lengths: offsets would not map
        low = text
    hits: dict[str, list[int]] = {}
    for m in _keyword_regex().finditer(low):
        hits.setdefault(m.group(), []).append(m.start())
    return hits
