"""Every occurrence of a detected value is redacted: across a record, and across a dataset."""

from __future__ import annotations

import importlib
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.data.pii import Entity
from sealtune.data.policy import Policy, default_policy, parse_policy
from sealtune.data.records import Message, Record
from sealtune.data.redact import DatasetKeys, DatasetValues, Redactor
from sealtune.data.redact.spread import (
    Matcher,
    dataset_worthy,
    record_worthy,
    spread,
    value_key,
)
from sealtune.data.redact.token import TOKEN_PATTERN

KEYS = DatasetKeys(bytes(range(32)))
# The module (the package's name ``spread`` is the function).
spread_module = importlib.import_module("sealtune.data.redact.spread")


def policy(redaction: dict[str, Any]) -> Policy:
    return parse_policy({"version": 1, "redaction": redaction}, source="p.yaml")


def chat(*turns: str) -> Record:
    roles = ["user", "assistant"]
    return Record("r", 1, [Message(roles[i % 2], t) for i, t in enumerate(turns)])  # type: ignore[misc]


def test_the_assistant_turn_gets_the_surrogate_of_the_user_turn() -> None:
    """The issue's case: the name is detected after 我是 and left verbatim in 王建国您好."""
    record = chat("你好，我是王建国，我的退款还没到账。", "王建国您好，退款将在3个工作日内到账。")
    analyzer = default_policy().analyzer()
    assert analyzer.analyze(record.messages[1].content) == []  # the assistant turn alone: missed
    outcome = Redactor(default_policy(), keys=KEYS).redact(record, analyzer)
    assert outcome.record is not None
    user, assistant = (m.content for m in outcome.record.messages)
    assert "王建国" not in user + assistant
    surrogate = user[len("你好，我是"):user.index("，我的")]
    assert assistant.startswith(surrogate + "您好") and len(surrogate) == 3
    assert outcome.spread == {("record", "PERSON"): 1}
    assert outcome.counts[("PERSON", "pseudonym")] == 2


def test_every_operator_replaces_every_occurrence_the_same_way() -> None:
    text = "我是王建国。王建国的卡。"
    found = [Entity("PERSON", 2, 5, 0.9, "test")]
    for rule in ("tag", "mask", "pseudonym", {"operator": "token", "deterministic": False},
                 "token"):
        redactor = Redactor(policy({"default": rule}), keys=KEYS)
        out = redactor.redact_record(chat(text, "好的王建国，王建国先生"), [found, []])
        assert out.record is not None
        first, second = (m.content for m in out.record.messages)
        assert "王建国" not in first + second, rule
        replaced = re.split("[我是。的卡好先生，]+", first + "。" + second)
        values = {v for v in replaced if v}
        assert len(values) == 1, (rule, values)  # one value, one replacement (tokens too)
        if isinstance(rule, dict) or rule == "token":
            assert TOKEN_PATTERN.fullmatch(values.pop())


def test_a_dropped_secret_drops_its_other_fields_too() -> None:
    record = chat("my password is hunter2-Quartz-99", "ok, hunter2-Quartz-99 is noted")
    found = [[Entity("SECRET", 15, 32, 0.9, "test")], []]
    redactor = Redactor(policy({"default": "tag", "SECRET": "drop_field"}))
    out = redactor.redact_record(record, found)
    assert out.record is not None and [m.content for m in out.record.messages] == ["", ""]
    out = Redactor(policy({"default": "tag", "SECRET": "drop_record"})).redact_record(
        record, found)
    assert out.record is None


def test_kept_text_fields_are_searched_too() -> None:
    pol = parse_policy({"version": 1, "keep_fields": ["note"], "redaction": {"default": "tag"}})
    record = Record("r", 1, [Message("user", "客户王建国来电")],
                    extra={"note": "回访王建国", "n": 3})
    out = Redactor(pol).redact_record(record, [[Entity("PERSON", 2, 5, 0.9, "test")]])
    assert out.record is not None and out.record.extra["note"] == "回访[PERSON]"


def test_longest_value_first_and_word_boundaries() -> None:
    m = Matcher()
    for key in ("王建", "王建国", "ann lee", "6222021234567890", "ann"):
        m.add(key, "X")
    view = value_key("王建国和王建，ann lee; annual; ann. 66222021234567890 6222021234567890")
    found = [view[s:e] for s, e, _ in m.find(view)]
    assert found == ["王建国", "王建", "ann lee", "ann", "6222021234567890"]


def test_case_full_width_and_spacing_forms_match() -> None:
    record = chat("Hi, I am Quentin Rasmussen.",
                  "Dear QUENTIN RASMUSSEN and ｑｕｅｎｔｉｎ　ｒａｓｍｕｓｓｅｎ; "
                  "QuentinRasmussen stays")
    start = record.messages[0].content.index("Quentin")
    found = [[Entity("PERSON", start, start + 17, 0.9, "test")], []]
    out = Redactor(policy({"default": "tag"})).redact_record(record, found)
    assert out.record is not None
    assert out.record.messages[1].content == "Dear [PERSON] and [PERSON]; QuentinRasmussen stays"


def test_what_is_searched_for() -> None:
    assert not record_worthy(value_key("王")) and record_worthy(value_key("王伟"))
    assert not record_worthy("x" * 201)
    assert dataset_worthy("PERSON", value_key("王伟"))
    assert not dataset_worthy("PERSON", value_key("Grace"))  # one Latin word: too common
    assert dataset_worthy("PERSON", value_key("Grace Hopper"))
    assert not dataset_worthy("PHONE", "12345")  # a short number
    assert dataset_worthy("PASSPORT", "e12345678")


def test_dataset_values_are_capped_and_count_what_they_leave_out() -> None:
    values = DatasetValues(limit=2)
    for name in ("王建国", "李秀英", "赵丽颖", "王建国"):
        values.learn("PERSON", name)
    values.learn("PERSON", "Mark")  # not worthy: not counted as left out
    assert values.to_json() == {"values": {"PERSON": 2}, "limit": 2, "left_out": {"PERSON": 1}}
    texts = ["王建国和李秀英和赵丽颖"]
    out, counts = spread(texts, [[]], dataset=values)
    assert [texts[0][e.start:e.end] for e in out[0]] == ["王建国", "李秀英"]
    assert counts == {("dataset", "PERSON"): 2}


def test_a_detection_wins_over_a_dictionary_match() -> None:
    values = DatasetValues()
    values.learn("PERSON", "王建国")
    text = "王建国路88号"
    address = Entity("ADDRESS", 0, 7, 0.8, "address")
    out, counts = spread([text], [[address]], dataset=values)
    assert out == [[address]] and not counts  # inside the detection: nothing added


def _reference(keys: list[str], view: str) -> list[tuple[int, int]]:
    """Leftmost, longest, non-overlapping, with Latin word boundaries: the slow way."""
    word = re.compile(r"(?![\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])"
                      r"[^\W_]")

    def is_word(ch: str) -> bool:
        return word.match(ch) is not None

    out: list[tuple[int, int]] = []
    pos = 0
    while pos < len(view):
        best = 0
        for key in keys:
            end = pos + len(key)
            if view.startswith(key, pos) and \
                    (pos == 0 or not (is_word(key[0]) and is_word(view[pos - 1]))) and \
                    (end == len(view) or not (is_word(key[-1]) and is_word(view[end]))):
                best = max(best, len(key))
        if best:
            out.append((pos, pos + best))
            pos += best
        else:
            pos += 1
    return out


ALPHABET = "ab 王建国1-"


def _matcher(keys: list[str]) -> Matcher:
    m = Matcher()
    for key in keys:
        m.add(key, "X")
    return m


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(ALPHABET, min_size=1, max_size=5), min_size=1, max_size=40),
       st.text(ALPHABET, max_size=80))
def test_matcher_agrees_with_the_slow_reference(keys: list[str], view: str) -> None:
    keys = sorted({k for k in keys if k.strip() == k and "  " not in k})
    if not keys:
        return
    m = _matcher(keys)
    expected = _reference(keys, view)
    assert [(s, e) for s, e, _ in m.find(view)] == expected  # one str.find per value
    assert list(m.find("." * (1 << 18))) == []  # a large input: the one-scan pattern
    assert [(s, e) for s, e, _ in m.find(view)] == expected
    assert [(s, e) for s, e, _ in m.find(view * 3)] == _reference(keys, view * 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(ALPHABET, min_size=1, max_size=5), min_size=1, max_size=40),
       st.text(ALPHABET, max_size=80))
def test_both_ways_of_locating_head_words_agree_with_the_reference(keys: list[str],
                                                                   view: str) -> None:
    """Few head words in a text are located with str.find, many with one scan of every word."""
    keys = sorted({k for k in keys if k.strip() == k and "  " not in k})
    if not keys:
        return
    m = _matcher(keys)
    assert m.find("." * (1 << 18)) == []  # the large-input path from here on
    expected = _reference(keys, view * 3)
    saved = spread_module._FEW_HEADS
    try:
        for few in (0, 1, 1000):
            spread_module._FEW_HEADS = few
            assert [(s, e) for s, e, _ in m.find(view * 3)] == expected, few
    finally:
        spread_module._FEW_HEADS = saved
