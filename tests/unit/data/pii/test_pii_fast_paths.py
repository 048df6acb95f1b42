"""The fast paths of the pattern tier give the answers of the plain code they replace.

Each shortcut on the per-record path (a cached span template, a narrower
token scan, a cheap gate before a regex scan, a regex for a word list ...)
is checked against a straightforward reference: the code as it was written
before the shortcut, kept here, on generated inputs.
"""

from __future__ import annotations

import re
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.data.pii import address, person, phone
from sealtune.data.pii._text import (
    _GROUP,
    _RUN,
    any_word,
    context_window,
    number_runs,
    pick_non_overlapping,
    resolve_overlaps,
)
from sealtune.data.pii.base import Entity
from sealtune.data.pii.secrets import SecretRule, SecretsRecognizer, default_rules


def texts(fragments: list[str], max_size: int = 14) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(fragments), max_size=max_size).map("".join)


# --- number runs: spans from a cached template per shape ----------------------

def reference_spans(raw: str, offset: int) -> tuple[tuple[int, int, str], ...]:
    groups = [(g.start() + offset, g.end() + offset, g.group()) for g in _GROUP.finditer(raw)]
    spans = []
    for i in range(len(groups)):
        digits = ""
        for j in range(i, min(len(groups), i + 6)):
            digits += groups[j][2]
            if len(digits) >= 7:
                spans.append((-len(digits), i, (groups[i][0], groups[j][1], digits)))
    spans.sort()
    return tuple(s[2] for s in spans)


@settings(max_examples=300, deadline=None)
@given(texts(["1", "12", "1234", "62220", " ", "-", "(", ")", "+", "X", "x", "中", "a", ".",
              "٣٣٣", "2024-02-16 15:27:30", "11010519491231002X"]))
def test_run_spans_match_enumerating_the_groups(text: str) -> None:
    runs = {run.first: run for run in number_runs(text)}
    for m in _RUN.finditer(text):
        if m.start() in runs and not m.group().isdigit():
            assert runs[m.start()].spans == reference_spans(m.group(), m.start())


# --- secrets: only tokens that start with a rule's first character ---------------

_TOKEN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_FIRST_RULES = tuple(r for r in default_rules() if r.first)


def reference_token_rules(text: str, rules: tuple[SecretRule, ...]) -> list[tuple[int, int, float]]:
    found = []
    for token in re.finditer(r"[0-9A-Za-z][0-9A-Za-z_\-]{15,}", text):
        for rule in (r for r in rules if text[token.start()] in r.first):
            m = rule.regex.match(text, token.start())
            if m:
                start, end = m.span(rule.group)
                if not rule.boundary or ((start == 0 or text[start - 1] not in _TOKEN_CHARS)
                                         and (end == len(text) or text[end] not in _TOKEN_CHARS)):
                    found.append((start, end, rule.score))
    return sorted(pick_non_overlapping(found))


_TOKEN_PARTS = ["ghp_", "_", "-", "--", "A", "AKIA", "sk-", "sk_live_", "eyJ", ".", " ", "xoxb-",
                "hf_", "LTAI", "AIza", "npm_", "SK", "glpat-", "1", "中", "abcdefABCDEF012345",
                "QWERTYUIOPASDFGHJKLZ", "0123456789abcdef0123456789abcdef"]


@settings(max_examples=400, deadline=None)
@given(texts(_TOKEN_PARTS), st.booleans())
def test_token_rules_fire_where_a_token_scan_would(text: str, boundary: bool) -> None:
    # Without the boundary check, a rule may fire only where a token starts.
    rules = tuple(replace(r, boundary=boundary and r.boundary) for r in _FIRST_RULES)
    found = SecretsRecognizer(rules=rules).analyze(text)
    assert sorted((e.start, e.end, e.score) for e in found) == reference_token_rules(text, rules)


# --- context windows and word lists ------------------------------------------------

_CLAUSE_END = re.compile(r"[。，,；;！？!?\n]|\.\s")


def reference_window(text: str, start: int, end: int, before: int, after: int) -> str:
    head = text[max(0, start - before):start]
    ends = [m.end() for m in _CLAUSE_END.finditer(head)]
    if ends:
        head = head[ends[-1]:]
    tail = text[end:end + after]
    stop = _CLAUSE_END.search(tail)
    if stop:
        tail = tail[:stop.start()]
    return (head + " " + tail).lower()


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .,\n。，；!?\t卡号Card")), max_size=60),
       st.integers(0, 60), st.integers(0, 60), st.integers(0, 40), st.integers(0, 12))
def test_context_window_stops_at_the_clause(text: str, a: int, b: int, before: int,
                                            after: int) -> None:
    start, end = sorted((min(a, len(text)), min(b, len(text))))
    assert context_window(text, start, end, before=before, after=after) == \
        reference_window(text, start, end, before, after)


@given(st.lists(st.text(alphabet="ab.*卡号", max_size=3), max_size=5).map(tuple),
       st.text(alphabet="ab.*卡号 ", max_size=12))
def test_any_word_finds_what_in_finds(words: tuple[str, ...], window: str) -> None:
    assert (any_word(words).search(window) is not None) == any(w in window for w in words)


# --- addresses: a possessive house number, gates before the scans ------------------

_EN_ADDRESS = re.compile(address._EN_ADDRESS.pattern.replace(r"\d{1,6}+", r"\d{1,6}", 1))
_ALNUM = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_NOISE = st.sampled_from(["", "x", "9", " ", "中", "-", "Please ", "St", "at "])
_ADDRESS = st.tuples(
    _NOISE, st.sampled_from(["1600", "12345678", "221B", "7", "350", "x1"]),
    st.sampled_from([" ", "  ", "\t", "\u3000", ""]),
    st.sampled_from(["Main", "Old Mill", "N. Baker", "5th", "the", "Amphitheatre"]),
    st.sampled_from([" ", "\u3000", ""]),
    st.sampled_from(["Street", "St", "St.", "Ave", "Pl", "Parkway", "Drive", "Streets", "Way"]),
    st.sampled_from(["", ", Apt 4B", ", Mountain View, CA 94043", " Suite 200", "x", "中"]),
).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ADDRESS, min_size=1, max_size=3).map("".join))
def test_english_addresses_as_an_unguarded_scan_finds_them(text: str) -> None:
    expected = []
    for street in (_EN_ADDRESS, address._DE_STREET, address._FR_STREET):
        for m in street.finditer(text):
            if not (m.start() and (text[m.start() - 1] in _ALNUM or
                                   text[m.start() - 1] in address.LETTERS)):
                expected.append(address.street_span(text, m))
    assert [(e.start, e.end) for e in address._english(text)] == expected


_ZH_PARTS = ["北京市", "海淀区", "中关村", "大街", "路", "88", "号", "1", "-", "之", "5", "小区",
             "花园", "3", "号楼", "栋", "2单元", "501室", "住在", "地址：", "，", "订单号", "8"]


@settings(max_examples=400, deadline=None)
@given(texts(_ZH_PARTS))
def test_chinese_addresses_as_unguarded_scans_find_them(text: str) -> None:
    expected = []
    for m in (*address._ROAD_NUMBER.finditer(text), *address._ESTATE_NUMBER.finditer(text)):
        start = address._left_edge(text, m.start())
        if m.start() - start >= 2:
            end = address._AFTER.match(text, m.end())
            expected.append((start, end.end() if end else m.end()))
    assert [(e.start, e.end) for e in address._chinese(text)] == expected


# --- person: one scan for cues, titles and possessives -----------------------------

def test_chinese_possessives_cannot_overlap_other_anchors() -> None:
    # Cues and titles share one alternation with the possessives (的手机 ...):
    # finditer finds them all, as two scans did, only if a possessive and
    # another anchor can never overlap in a text.
    match = re.search(r"\(\?:(.*)\)", person._ZH_POSSESSIVE)
    assert match is not None
    possessives = {"的" + w for w in match.group(1).split("|")}
    anchors = person.ZH_CUES | person.ZH_TITLES
    for a, b in [(a, b) for a in anchors for b in possessives] + \
            [(b, a) for a in anchors for b in possessives]:
        for k in range(1, len(a)):  # b would start at a[k]: the shared part must differ
            shared = min(len(a) - k, len(b))
            assert a[k:k + shared] != b[:shared], (a, b)


# --- phone: cheap length checks before the date check ------------------------------

def reference_score(raw: str, digits: str, *, plus: bool) -> float:
    n = len(digits)
    if not digits.isdigit():
        return 0.0
    if not plus and "-" in raw and phone._DATE.search(raw):
        return 0.0
    if plus:
        return 0.9 if n >= 8 and phone._international_ok(digits) else 0.0
    if digits.startswith("00") and n >= 10:
        return 0.85 if phone._international_ok(digits[2:]) else 0.0
    if n == 11 and digits[0] == "1":
        return 0.85 if phone._cn_mobile_prefix_ok(digits[:5]) else 0.0
    if n == 13 and digits.startswith("861"):
        return 0.85 if phone._cn_mobile_prefix_ok(digits[2:7]) else 0.0
    if digits[0] == "0" and 10 <= n <= 12 and digits[1] not in "04":
        return 0.8 if phone._cn_landline_ok(digits[1:]) else 0.0
    if n == 10 and digits[0] in "23456789":
        return 0.7 if phone._nanp_ok(raw, digits) else 0.0
    return 0.0


_PHONE_PARTS = ["0", "00", "1", "13", "138", "86", "2024", "-", " ", "(", ")", "0755", "415",
                "555", "2671", "12", "09", "X"]


@settings(max_examples=400, deadline=None)
@given(texts(_PHONE_PARTS, max_size=8), st.booleans())
def test_phone_score_as_in_the_plain_order(raw: str, plus: bool) -> None:
    digits = "".join(c for c in raw if c.isdigit() or c == "X")
    if len(digits) >= 7:
        assert phone.score(raw, digits, plus=plus) == reference_score(raw, digits, plus=plus)


# --- overlap resolution: a claim map (beyond _FEW candidates) instead of pairwise tests

def reference_pick(found: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    kept: list[tuple[int, int, float]] = []
    for start, end, score in sorted(found, key=lambda f: (-f[2], f[0] - f[1], f[0])):
        if all(end <= s or start >= e for s, e, _ in kept):
            kept.append((start, end, score))
    return kept


_SPANS = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12),
                            st.sampled_from([0.6, 0.7, 0.85, 0.9])), max_size=40)


@settings(max_examples=400, deadline=None)
@given(_SPANS)
def test_overlaps_resolved_as_by_pairwise_tests(spans: list[tuple[int, int, float]]) -> None:
    found = [(s, s + n, score) for s, n, score in spans]
    assert sorted(pick_non_overlapping(found)) == sorted(reference_pick(found))
    entities = [Entity("PERSON" if i % 2 else "PHONE", s, e, score, "t")
                for i, (s, e, score) in enumerate(found)]
    kept = resolve_overlaps(entities)
    want = {(s, e, score) for s, e, score in reference_pick(found)}
    assert [(e.start, e.end, e.score) for e in kept] == sorted(want)
