"""Every occurrence of a detected value: across a record, and across a dataset.

Detection is contextual: a name is found after a cue (``我是王建国``), a
passport number next to the word "passport", a card number with its network
prefix. The same value elsewhere, without its cue (the assistant's
``王建国您好``), is not detected, and those are the very tokens the model is
trained on. This module finds those other occurrences by the *value*:

* record-wide (always): every value detected anywhere in a record is
  searched for in every turn and kept text field of that record;
* dataset-wide (on by default, :class:`DatasetValues`): values detected in
  any record of the input are searched for in every record. Ingest collects
  them in its first pass over the input and applies them in its last, so a
  name detected in record 7 is redacted in record 1 too. The values are
  kept only in this process's memory (never written, not even sealed).

A found occurrence becomes an :class:`~sealtune.data.pii.base.Entity` of the
detected value's type (``recognizer`` ``sealtune.record`` or
``sealtune.dataset``, score 0 so that a real detection wins an overlap), and
redaction applies that type's operator, so it gets the same surrogate
(pseudonyms are keyed by the canonical value) or is dropped with its field.

Matching is on the text as the recognizers see it (NFKC: full-width forms
match their ASCII twins) and ignores case; a value that starts or ends with a
Latin letter or digit only matches on a word boundary (``Ann`` is not found
in ``Annual``; ``6222…`` not inside a longer number), while Chinese,
Japanese and Korean characters have no word boundaries and match anywhere.
Values are tried longest first, so ``王建国`` wins over ``王建``. The cost is
linear in the text: the candidate starts are the whole Latin words that begin
some value (found by a set intersection of the text's words, then located with
``str.find``; past a few such words, one regular-expression scan over every
word instead) and the characters that begin some value (one scan), and each
candidate costs a hash lookup per value length.

What this protects against: a detected value surviving elsewhere in the
record or the dataset, in the same spelling (any case, full-width or not).
What it does not: a value spelled differently (other spacing or
punctuation, a nickname, a transliteration) is found only if detected; a
value never detected anywhere stays; past :data:`DATASET_LIMIT` distinct
values the dictionary stops growing (the values left out are counted); and
dataset-wide matching spreads a false detection too (a word mistaken for a
name is replaced wherever it appears), which is why short values are kept
out of it (see :func:`dataset_worthy`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from sealtune.data.pii.base import Entity
from sealtune.data.pii.normalize import Normalized, normalize_with_starts

__all__ = ["DATASET_LIMIT", "MAX_VALUE_CHARS", "DatasetValues", "Matcher", "dataset_worthy",
           "record_worthy", "spread", "value_key"]

#: Distinct values the dataset-wide dictionary holds at most (a few tens of MB).
DATASET_LIMIT = 200_000
#: Longer values are not searched for (a PEM key is found by its pattern anyway).
MAX_VALUE_CHARS = 200
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
# A Latin-script word: letters and digits that are not CJK (those have no boundaries).
_WORD = f"[^\\W_{_CJK}]+"
_WORD_AT = re.compile(_WORD)
_WORD_CHAR = re.compile(f"[^\\W_{_CJK}]")
# Two word characters in a row: no word boundary between them.
_WORD_PAIR = re.compile(f"[^\\W_{_CJK}]{{2}}")
# Up to this many (values x characters), one str.find per value beats compiling a
# pattern (a record's own values: usually a handful); beyond, the scan stays linear.
_SMALL = 1 << 18
# Up to this many distinct words of a text that begin a value, each is looked for with
# str.find (a text's words are mostly ordinary ones); beyond, one scan over every word.
_FEW_HEADS = 8


def _fold(text: str) -> str:
    """Lower case, one character for one (offsets must still map back)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _view(text: str) -> tuple[str, tuple[int, ...] | None]:
    seen, starts = normalize_with_starts(text)
    return _fold(seen), starts


def value_key(value: str) -> str:
    """The form values are compared in: NFKC, lower case, whitespace runs as one space."""
    return " ".join(_view(value)[0].split())


def _is_word_char(ch: str) -> bool:
    return _WORD_CHAR.match(ch) is not None


def record_worthy(key: str) -> bool:
    """Whether a value detected in a record is searched for in the rest of that record.

    One character is too little to look for (a surname alone is not a name).
    """
    return len(key.replace(" ", "")) >= 2 and len(key) <= MAX_VALUE_CHARS


def dataset_worthy(entity_type: str, key: str) -> bool:
    """Whether a detected value is searched for in every record of the dataset.

    A false detection spreads with it, so the bar is higher than within a
    record: values with CJK characters need two of them or more; others at
    least six letters or digits, and a name at least two words (one Latin
    word alone, ``Mark`` or ``Grace``, is too often an ordinary word, and a
    surname alone is not a name).
    """
    if not record_worthy(key):
        return False
    if len(_CJK_CHAR.findall(key)) >= 2:
        return True
    if sum(1 for c in key if c.isalnum()) < 6:
        return False
    return entity_type != "PERSON" or " " in key


class Matcher:
    """Finds many literal values in a text: leftmost, longest first, never overlapping."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}
        self._lengths: dict[str, list[int]] = {}  # head -> value lengths, longest first
        self._chars: set[str] = set()  # heads that are one character (no word boundary)
        self._words: set[str] = set()  # heads that are a whole Latin word
        self._pattern: re.Pattern[str] | None = None  # every word, and the one-character heads
        self._char_pattern: re.Pattern[str] | None = None  # the one-character heads

    def __len__(self) -> int:
        return len(self.types)

    def __contains__(self, key: str) -> bool:
        return key in self.types

    def add(self, key: str, entity_type: str) -> None:
        """Add ``key`` (a :func:`value_key`) of ``entity_type``; the first type given wins."""
        if not key or key in self.types:
            return
        self.types[key] = entity_type
        word = _WORD_AT.match(key)
        head = word.group() if word else key[0]
        (self._words if word else self._chars).add(head)
        lengths = self._lengths.setdefault(head, [])
        if len(key) not in lengths:
            lengths.append(len(key))
            lengths.sort(reverse=True)
        self._pattern = self._char_pattern = None

    def find(self, view: str) -> list[tuple[int, int, str]]:
        """``(start, end, type)`` of every value in ``view`` (a text as :func:`_view` gives it)."""
        if not self.types:
            return []
        if self._pattern is None and len(self.types) * len(view) <= _SMALL:
            return self._find_small(view)
        heads = self._words.intersection(_WORD_AT.findall(view))
        has_chars = not self._chars.isdisjoint(view)
        if not heads and not has_chars:
            return []  # no value can start anywhere: scans in C, no Python loop
        hits: list[tuple[int, int, str]] = []
        types, size = self.types, len(view)
        until = 0
        for start, head in self._candidates(view, heads, has_chars=has_chars):
            if start < until:
                continue
            for length in self._lengths[head]:  # longest first
                end = start + length
                if end <= size and view[start:end] in types and self._ends_well(view, end):
                    hits.append((start, end, types[view[start:end]]))
                    until = end
                    break
        return hits

    def _candidates(self, view: str, heads: set[str], *, has_chars: bool
                    ) -> list[tuple[int, str]]:
        """Where a value may start in ``view``, in text order, with the head found there.

        ``heads`` are the words of ``view`` that begin a value: a whole word (a maximal
        run of word characters) is one; ``has_chars`` whether a one-character head occurs.
        """
        if self._pattern is None or self._char_pattern is None:
            chars = "".join(re.escape(c) for c in sorted(self._chars))
            self._pattern = re.compile(f"{_WORD}|[{chars}]" if chars else _WORD)
            self._char_pattern = re.compile(f"[{chars}]" if chars else "(?!)")
        if len(heads) > _FEW_HEADS:  # one scan over every word: linear whatever the heads
            return [(m.start(), m.group()) for m in self._pattern.finditer(view)
                    if m.group() in self._lengths]
        found = [(m.start(), m.group()) for m in self._char_pattern.finditer(view)] \
            if has_chars else []
        for head in heads:  # at most _FEW_HEADS scans in C; Python only at each occurrence
            pos = view.find(head)
            while pos >= 0:
                if (pos == 0 or not _WORD_CHAR.match(view, pos - 1)) \
                        and not _WORD_CHAR.match(view, pos + len(head)):
                    found.append((pos, head))
                pos = view.find(head, pos + 1)
        if len(heads) + has_chars > 1:
            found.sort()  # distinct positions: a head word and a head character never share one
        return found

    @staticmethod
    def _ends_well(view: str, end: int) -> bool:
        """No word boundary is cut at ``end`` (``end`` is past at least one character)."""
        return _WORD_PAIR.match(view, end - 1) is None

    def _find_small(self, view: str) -> list[tuple[int, int, str]]:
        hits: list[tuple[int, int]] = []
        for key in self.types:
            bounded = _is_word_char(key[0])
            pos = view.find(key)
            while pos >= 0:
                starts_well = pos == 0 or not bounded or _WORD_PAIR.match(view, pos - 1) is None
                if starts_well and self._ends_well(view, pos + len(key)):
                    hits.append((pos, -len(key)))
                pos = view.find(key, pos + 1)
        out: list[tuple[int, int, str]] = []
        until = 0
        for start, negative in sorted(hits):
            if start >= until:
                until = start - negative
                out.append((start, until, self.types[view[start:until]]))
        return out


class DatasetValues:
    """The dataset-wide dictionary: values detected anywhere in the input, in memory only.

    Args:
        limit: distinct values kept at most; later ones are counted in :attr:`left_out`.
    """

    def __init__(self, *, limit: int = DATASET_LIMIT) -> None:
        self.matcher = Matcher()
        self.limit = limit
        self.by_type: Counter[str] = Counter()
        self.left_out: Counter[str] = Counter()

    def learn(self, entity_type: str, value: str) -> None:
        """Remember a detected value if it is worth searching for everywhere."""
        key = value_key(value)
        if key in self.matcher or not dataset_worthy(entity_type, key):
            return
        if len(self.matcher) >= self.limit:
            self.left_out[entity_type] += 1
            return
        self.matcher.add(key, entity_type)
        self.by_type[entity_type] += 1

    def to_json(self) -> dict[str, object]:
        """Counts only (never a value)."""
        return {"values": dict(sorted(self.by_type.items())), "limit": self.limit,
                "left_out": dict(sorted(self.left_out.items()))}


def spread(texts: Sequence[str], found: Sequence[Sequence[Entity]], *,
           dataset: DatasetValues | None = None
           ) -> tuple[list[list[Entity]], Counter[tuple[str, str]]]:
    """Add an entity for every other occurrence of a detected value.

    Args:
        texts: the record's texts (turns, then kept text fields).
        found: the detected entities of each text (offsets into it).
        dataset: the dataset-wide values, or None for record-wide only.

    Returns:
        The entities of each text (the detected ones first), and the added
        occurrences per (scope, type); scopes are ``record`` and ``dataset``.
    """
    local = Matcher()
    for text, entities in zip(texts, found, strict=True):
        for e in entities:
            key = value_key(text[e.start:e.end])
            if record_worthy(key):
                local.add(key, e.type)
    counts: Counter[tuple[str, str]] = Counter()
    scopes = [("record", local)] + ([("dataset", dataset.matcher)] if dataset else [])
    out: list[list[Entity]] = []
    for text, entities in zip(texts, found, strict=True):
        added = _occurrences(text, entities, scopes)
        for e in added:
            counts[(e.recognizer.removeprefix("sealtune."), e.type)] += 1
        out.append([*entities, *added])
    return out, counts


def _occurrences(text: str, detected: Sequence[Entity],
                 scopes: Sequence[tuple[str, Matcher]]) -> list[Entity]:
    """The occurrences the matchers find that no detected entity already covers."""
    view = ""
    hits: list[tuple[int, int, int, str]] = []
    for rank, (_, matcher) in enumerate(scopes):
        if not matcher:
            continue  # an empty matcher: the text need not even be normalised
        if not view:
            view, starts = _view(text)
            to_original = Normalized(view, len(text), starts).to_original
        hits += [(*to_original(start, end), rank, etype)
                 for start, end, etype in matcher.find(view)]
    if not hits:
        return []
    hits.sort(key=lambda h: (h[0], h[0] - h[1], h[2]))
    covered = sorted((e.start, e.end) for e in detected)
    added: list[Entity] = []
    until, j = 0, 0
    for start, end, rank, etype in hits:
        if start < until:
            continue  # overlaps an occurrence already taken (longest first)
        while j < len(covered) and covered[j][1] <= start:
            j += 1
        if j < len(covered) and covered[j][0] <= start and end <= covered[j][1]:
            continue  # the detection itself, or inside it
        until = end
        added.append(Entity(etype, start, end, 0.0, f"sealtune.{scopes[rank][0]}"))
    return added
