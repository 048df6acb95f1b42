"""The output filter: blocked terms and PII redaction on every response, streamed or not.

Applied by the server to the generated text before it is sent, in plaintext
mode and in end-to-end encrypted mode alike (before sealing). Two rules:

* **blocked terms** (configurable, case-insensitive substrings) are replaced
  by ``[BLOCKED]``;
* **PII and secrets** found by the data stage's engine
  (:func:`sealtune.data.pii.analyze` through an ``Analyzer``) are replaced by
  a type tag such as ``[PHONE]``; the default policy tags ``CN_ID``,
  ``BANK_CARD``, ``PHONE``, ``EMAIL`` and ``SECRET``. If the policy asks for
  PII redaction and that engine is not installed, building the filter fails
  (fail closed); ``pii_types=()`` turns redaction off explicitly.

For streams, :class:`StreamFilter` holds back the last ``holdback_chars``
characters (default 64) and never releases text in the middle of a detected
value, so a phone number or card split across tokens is still caught; the
rest is released as it arrives. The filter keeps 32 characters of already
released text as left context for recognizers that look at cue words.

What this protects against: a model regurgitating identifiers, contact data
or credentials it saw in training (typical memorisation leaks), and listed
terms. What it does not: values the recognizers do not describe (names and
addresses need the NER tier, which is off by default), data spelt out in
words or split by the model with filler text, streamed values longer than
the hold-back window (e.g. a PEM private key: its beginning may be released
before the whole is recognised; a non-streamed response is checked as a
whole), and anything a determined prompt can make the model encode.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sealtune.errors import ConfigError

DEFAULT_PII_TYPES: tuple[str, ...] = ("CN_ID", "BANK_CARD", "PHONE", "EMAIL", "SECRET")
BLOCKED_TAG = "[BLOCKED]"
_LEFT_CONTEXT = 32


@dataclass(frozen=True)
class FilterPolicy:
    """What the output filter removes.

    Attributes:
        blocked_terms: case-insensitive substrings replaced by ``[BLOCKED]``.
        pii_types: entity types replaced by ``[TYPE]``; empty turns PII
            redaction off.
        holdback_chars: how much trailing text a stream holds back (>= 16).
    """

    blocked_terms: tuple[str, ...] = ()
    pii_types: tuple[str, ...] = DEFAULT_PII_TYPES
    holdback_chars: int = 64

    def __post_init__(self) -> None:
        if self.holdback_chars < 16:
            raise ConfigError("output filter: holdback_chars must be at least 16")
        if any(not t.strip() for t in self.blocked_terms):
            raise ConfigError("output filter: blocked terms must not be empty")


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    tag: str


class OutputFilter:
    """Applies a :class:`FilterPolicy` to whole texts or, via :meth:`stream`, to streams.

    Raises:
        ConfigError: PII redaction is asked for but ``sealtune.data.pii`` is
            missing, or a type is unknown to it.
    """

    def __init__(self, policy: FilterPolicy | None = None) -> None:
        self.policy = policy or FilterPolicy()
        terms = sorted({t.lower() for t in self.policy.blocked_terms}, key=len, reverse=True)
        self._blocked = (re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)
                         if terms else None)
        self._analyzer: Any = None
        if self.policy.pii_types:
            self._analyzer = _make_analyzer(self.policy.pii_types)
        longest = max((len(t) for t in terms), default=0)
        self.holdback = max(self.policy.holdback_chars, longest)

    @property
    def active(self) -> bool:
        """Whether the filter changes anything at all."""
        return self._blocked is not None or self._analyzer is not None

    def spans(self, text: str) -> list[_Span]:
        """Non-overlapping spans to replace, sorted (overlaps are merged)."""
        found: list[_Span] = []
        if self._analyzer is not None:
            found += [_Span(e.start, e.end, f"[{e.type}]") for e in self._analyzer.analyze(text)]
        if self._blocked is not None:
            found += [_Span(m.start(), m.end(), BLOCKED_TAG) for m in self._blocked.finditer(text)]
        found.sort(key=lambda s: (s.start, -s.end))
        merged: list[_Span] = []
        for span in found:
            if merged and span.start < merged[-1].end:
                last = merged[-1]
                merged[-1] = _Span(last.start, max(last.end, span.end), last.tag)
            else:
                merged.append(span)
        return merged

    def apply(self, text: str, counts: Counter[str] | None = None) -> str:
        """Return ``text`` with every span replaced by its tag; count tags in ``counts``."""
        if not self.active or not text:
            return text
        return _replace(text, self.spans(text), 0, len(text), counts)

    def stream(self) -> StreamFilter:
        """A filter for one streamed response."""
        return StreamFilter(self)


def _make_analyzer(types: Sequence[str]) -> Any:
    try:
        from sealtune.data.pii import Analyzer
    except ImportError as exc:
        raise ConfigError("output filter: PII redaction needs the data stage's PII engine",
                          hint="install sealtune[data], or set pii_types to [] to turn "
                               "redaction off") from exc
    from sealtune.errors import UsageError

    try:
        return Analyzer(types=types)
    except UsageError as exc:
        raise ConfigError(f"output filter: {exc.message}", hint=exc.hint) from None


def _replace(text: str, spans: Sequence[_Span], start: int, stop: int,
             counts: Counter[str] | None) -> str:
    """``text[start:stop]`` with spans (clamped to the range) replaced by their tags."""
    out, pos = [], start
    for span in spans:
        if span.end <= start or span.start >= stop:
            continue
        out.append(text[pos : max(pos, span.start)])
        out.append(span.tag)
        if counts is not None:
            counts[span.tag.strip("[]")] += 1
        pos = min(span.end, stop)
    out.append(text[pos:stop])
    return "".join(out)


class StreamFilter:
    """Filters one stream: :meth:`feed` each piece, then :meth:`flush` once.

    Attributes:
        counts: replacements made so far, by tag (``PHONE``, ``BLOCKED``, ...).
    """

    def __init__(self, parent: OutputFilter) -> None:
        self._filter = parent
        self._context = ""  # released original text, kept as left context
        self._buf = ""
        self.counts: Counter[str] = Counter()

    def feed(self, piece: str) -> str:
        """Take the next piece; return the filtered text that is safe to release now."""
        if not self._filter.active:
            return piece
        self._buf += piece
        keep = self._filter.holdback
        if len(self._buf) <= keep:
            return ""
        text = self._context + self._buf
        base = len(self._context)
        spans = self._filter.spans(text)
        cut = len(text) - keep
        for span in spans:  # never release part of a detected value
            if span.start < cut < span.end:
                cut = max(base, span.start)
        if cut <= base:
            return ""
        return self._release(text, spans, base, cut)

    def flush(self) -> str:
        """End of the stream: return the rest, filtered."""
        if not self._buf:
            return ""
        text = self._context + self._buf
        return self._release(text, self._filter.spans(text), len(self._context), len(text))

    def _release(self, text: str, spans: list[_Span], base: int, cut: int) -> str:
        out = _replace(text, spans, base, cut, self.counts)
        self._context = text[max(0, cut - _LEFT_CONTEXT) : cut]
        self._buf = text[cut:]
        return out
