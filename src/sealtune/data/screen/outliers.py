"""Outliers: length, charset and language (script).

Catches:

- ``length``: a prompt or answer whose log-length is more than ``length_z``
  robust z-scores (median and MAD of the data set) from the median: padded,
  repeated or truncated records, and payloads stuffed into one field.
- ``charset``: control characters (other than tab and newline), zero-width
  and other invisible format characters, bidirectional overrides (the
  "Trojan Source" trick that shows text in a different order than it is
  read), private-use characters, and words that mix Latin with Cyrillic or
  Greek letters (homoglyph spoofing such as ``pаypal`` with a Cyrillic
  ``а``). These hide instructions or triggers from a human reviewer.
- ``language``: a prompt or answer whose dominant script (Han/CJK, Latin,
  Cyrillic, Arabic, other) is rarer than ``rare_script`` of the data set, or
  a prompt/answer script pairing that rare (a Chinese data set answering one
  prompt in Russian; text where no script has twice the letters of another,
  a CJK character weighing two, is mixed and not judged). Scripts stand in
  for languages: cheap, and enough to
  separate Chinese from English, not English from French.

Does not catch: fluent, well-formed poison (that is what the trigger and
duplicate checks look for), a script that is merely unusual for one topic,
or homoglyphs from scripts other than Cyrillic and Greek. A data set with
fewer than ``min_records`` records gets no length or language findings (the
statistics would be noise); charset findings need no statistics.

Memory per record: two float32 log-lengths and two script codes (10 B).
Single pass.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from sealtune.data.screen import _points, _text
from sealtune.data.screen.base import Action, CheckSpec, Finding, SampleBatch, register_check

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff]")
_BIDI = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_PRIVATE = re.compile(r"[\ue000-\uf8ff]")
# Homoglyph words: a word (maximal run of letters) holding both an ASCII
# letter and a Greek or Cyrillic one. Found as words first, then tested, so
# every character is looked at a bounded number of times: the former single
# regex with two ``[^\W\d_]*`` lookaheads rescanned the rest of the word from
# every position, quadratic in a long run of letters (31 s for 40,000).
_WORD = re.compile(r"[^\W\d_]+")
_LATIN_LETTER = re.compile(r"[a-zA-Z]")
_GREEK_CYRILLIC = re.compile(r"[\u0370-\u03ff\u0400-\u04ff]")
_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cjk", re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")),
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]")),
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
    ("other", re.compile(r"[\u0370-\u03ff\u0590-\u05ff\u0900-\u0dff\u0e00-\u0e7f]")),
)
SCRIPT_NAMES = ("none", *(name for name, _ in _SCRIPTS))
_MIN_LETTERS = 4
_CJK_WEIGHT = 2
#: The character classes above, for counting a whole batch at once: per code point
#: below 0x10000 (no class reaches higher), 0 for none, else one of these (they are
#: disjoint; Greek is both the script "other" and a homoglyph alphabet).
_CLASSES = ("cjk", "latin", "cyrillic", "arabic", "other", "greek",
            "control", "invisible", "bidi", "private_use")
_CHARSETS = (("control", _CONTROL), ("invisible", _INVISIBLE), ("bidi", _BIDI),
             ("private_use", _PRIVATE))


def _class_table() -> npt.NDArray[np.uint8]:
    chars = "".join(map(chr, range(0xD800))) + "\ufffd" * 0x800 + \
        "".join(map(chr, range(0xE000, 0x10000)))
    table = np.zeros(0x10000, dtype=np.uint8)
    patterns = [*_SCRIPTS, ("greek", re.compile(r"[\u0370-\u03ff]")), *_CHARSETS]
    for name, rx in patterns:  # later patterns win: Greek over "other"
        hits = [m.start() for m in rx.finditer(chars)]
        table[hits] = _CLASSES.index(name) + 1
    return table


_TABLE = _class_table()


def class_counts(texts: Sequence[str]) -> npt.NDArray[np.int64]:
    """``len(texts) x len(_CLASSES)``: how many characters of each class each text has."""
    cps = _points.Points.of(texts)
    classes = _TABLE[np.minimum(cps.cps, 0xFFFF)] * (cps.cps < 0x10000)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), cps.lengths)
    width = len(_CLASSES) + 1
    counts = np.bincount(owner * width + classes, minlength=len(texts) * width)
    return counts.reshape(len(texts), width)[:, 1:]


def charset_issues(text: str) -> dict[str, int]:
    """Counts of suspicious characters in raw ``text`` (empty dict if clean)."""
    found = {
        "control": len(_CONTROL.findall(text)),
        "invisible": len(_INVISIBLE.findall(text)),
        "bidi": len(_BIDI.findall(text)),
        "private_use": len(_PRIVATE.findall(text)),
        "mixed_script_words": mixed_script_words(text),
    }
    return {k: v for k, v in found.items() if v}


def mixed_script_words(text: str) -> int:
    """How many words of ``text`` mix ASCII letters with Greek or Cyrillic ones (linear)."""
    if _GREEK_CYRILLIC.search(text) is None:  # the common case: one scan, no words
        return 0
    return sum(1 for m in _WORD.finditer(text)
               if _GREEK_CYRILLIC.search(m.group()) and _LATIN_LETTER.search(m.group()))


def dominant_script(text: str) -> int:
    """Index into :data:`SCRIPT_NAMES` of the dominant script (0: too few letters, or mixed).

    A CJK character counts as ``_CJK_WEIGHT`` letters (it carries about a
    short word). A script dominates with at least twice the letters of the
    runner-up; code-switched text ("Is the 小米手环 in stock in 广州?") is
    mixed and never judged.
    """
    return _dominant([len(rx.findall(text)) for _, rx in _SCRIPTS])


def _dominant(counts: list[int]) -> int:
    """:func:`dominant_script` from the letter counts of each script."""
    counts[0] *= _CJK_WEIGHT
    order = sorted(range(len(counts)), key=counts.__getitem__, reverse=True)
    best, second = counts[order[0]], counts[order[1]]
    return order[0] + 1 if best >= _MIN_LETTERS and best >= 2 * second else 0


def _batch_scripts_and_charsets(prompts: list[str], responses: list[str]) -> tuple[
        list[tuple[int, int]], list[dict[str, int]]]:
    """Per record: the two sides' dominant scripts, and :func:`charset_issues` of
    ``prompt + "\\n" + response``, from one count of every character's class."""
    counts = class_counts(prompts + responses).tolist()
    n = len(prompts)
    scripts, issues = [], []
    for i in range(n):
        p, r = counts[i], counts[n + i]
        scripts.append((_dominant([*p[:4], p[4] + p[5]]), _dominant([*r[:4], r[4] + r[5]])))
        found = {name: p[k] + r[k] for k, name in enumerate(_CLASSES) if k > 5}
        if p[2] + p[5] + r[2] + r[5]:  # Greek or Cyrillic: look for mixed words
            found["mixed_script_words"] = mixed_script_words(prompts[i] + "\n" + responses[i])
        issues.append({k: v for k, v in found.items() if v})
    return scripts, issues


class Outliers:
    """Length, charset and script outliers."""

    passes = 1

    def __init__(self, thresholds: Mapping[str, float], action: Action) -> None:
        self._action = action
        self._z = float(thresholds["length_z"])
        self._rare = float(thresholds["rare_script"])
        self._min_records = int(thresholds["min_records"])
        self._lengths = _text.Rows(2, np.float32)
        self._scripts = _text.Rows(2, np.uint8)
        self._charset: list[tuple[int, dict[str, int]]] = []

    def observe(self, pass_no: int, batch: SampleBatch) -> None:
        """Measure lengths and scripts; scan the raw text for charset issues."""
        prompts = [s.record.prompt_text() for s in batch.samples]
        responses = [s.record.response_text() for s in batch.samples]
        lens = [(math.log1p(len(s.prompt)), math.log1p(len(s.response))) for s in batch.samples]
        scripts, issues = _batch_scripts_and_charsets(prompts, responses)
        for s, found in zip(batch.samples, issues, strict=True):
            if found:
                self._charset.append((s.index, found))
        self._lengths.extend(np.array(lens, dtype=np.float32).reshape(-1, 2))
        self._scripts.extend(np.array(scripts, dtype=np.uint8).reshape(-1, 2))

    def findings(self, ids: Sequence[str]) -> list[Finding]:
        """Charset findings always; length and script ones on large enough data."""
        out = [Finding("outlier", ids[i],
                       "charset " + " ".join(f"{k}={v}" for k, v in sorted(issues.items())),
                       float(sum(issues.values())), (), self._action)
               for i, issues in self._charset]
        if len(ids) >= self._min_records:
            out += self._length_findings(ids) + self._script_findings(ids)
        return out

    def _length_findings(self, ids: Sequence[str]) -> list[Finding]:
        lengths = self._lengths.view().astype(np.float64)
        med = np.median(lengths, axis=0)
        # MAD floor: a data set of near-constant lengths must not make every
        # small deviation infinite.
        mad = np.maximum(np.median(np.abs(lengths - med), axis=0) * 1.4826, 0.05)
        z = (lengths - med) / mad
        out = []
        for i in np.flatnonzero(np.abs(z).max(axis=1) > self._z).tolist():
            side = int(np.abs(z[i]).argmax())
            name = ("prompt", "response")[side]
            chars = round(math.expm1(float(lengths[i, side])))
            typical = round(math.expm1(float(med[side])))
            out.append(Finding("outlier", ids[i],
                               f"length {name} chars={chars} median={typical} "
                               f"robust_z={z[i, side]:+.1f}",
                               float(abs(z[i, side])), (), self._action))
        return out

    def _script_findings(self, ids: Sequence[str]) -> list[Finding]:
        scripts = self._scripts.view()
        n = len(ids)
        side_freq = [Counter(scripts[:, k].tolist()) for k in (0, 1)]
        pair_freq = Counter(map(tuple, scripts.tolist()))
        limit = self._rare * n
        out = []
        for i in range(n):
            p, r = int(scripts[i, 0]), int(scripts[i, 1])
            reasons = [f"{side} script={SCRIPT_NAMES[code]} share={side_freq[k][code] / n:.4f}"
                       for k, (side, code) in enumerate((("prompt", p), ("response", r)))
                       if code and side_freq[k][code] < limit]
            if not reasons and p and r and pair_freq[(p, r)] < limit:
                reasons.append(f"script pair prompt={SCRIPT_NAMES[p]} response={SCRIPT_NAMES[r]} "
                               f"share={pair_freq[(p, r)] / n:.4f}")
            if reasons:
                out.append(Finding("outlier", ids[i], "language " + "; ".join(reasons),
                                   1.0, (), self._action))
        return out


register_check(CheckSpec(
    "outlier", lambda t, a: Outliers(t, a),
    {"length_z": 4.0, "rare_script": 0.005, "min_records": 200},
    summary="length (robust z), charset (control, invisible, bidi, homoglyph) and script"))
