"""Conflicting answers to one prompt."""

from __future__ import annotations

from sealtune.data.records import Message, Record
from sealtune.data.screen import CheckConfig, screen

ONLY = {"conflict": CheckConfig()}
PROMPT = "订单4821044337可以开增值税专用发票吗"


def rec(rid: str, prompt: str, response: str) -> Record:
    return Record(rid, 1, [Message("user", prompt), Message("assistant", response)])


def flagged(records: list[Record]) -> dict[str, str]:
    return {f.record_id: f.reason for f in screen(records, config=ONLY).findings}


def test_minority_answer_is_flagged_with_the_others_related() -> None:
    yes = "可以开专票，请提供公司抬头和税号，我们三个工作日内寄出。"
    records = [rec("a", PROMPT, yes), rec("b", PROMPT + " ", yes + "谢谢"),
               rec("c", PROMPT.replace("发票", "發票"), yes),
               rec("d", PROMPT, "抱歉，我们不支持开具任何发票，请勿再问。")]
    report = screen(records, config=ONLY)
    assert [f.record_id for f in report.findings] == ["d"]
    assert set(report.findings[0].related_ids) == {"a", "b"}
    assert "minority" in report.findings[0].reason


def test_tie_flags_both_sides() -> None:
    records = [rec("a", PROMPT, "可以开专票，请提供公司抬头和税号。"),
               rec("b", PROMPT, "不能开票，本店商品均不提供发票。")]
    assert set(flagged(records)) == {"a", "b"}


def test_same_answer_reworded_slightly_is_not_a_conflict() -> None:
    answer = "Yes, send us the company name and tax number and we will issue the invoice."
    records = [rec("a", "Can you issue a VAT invoice?", answer),
               rec("b", "can you issue a VAT invoice?", answer.replace("Yes,", "Sure,"))]
    assert flagged(records) == {}


def test_short_generic_prompts_are_skipped() -> None:
    records = [rec("a", "在吗", "在的，请问有什么可以帮您？"), rec("b", "在吗", "您好，请讲。")]
    assert flagged(records) == {}


def test_planted_conflicts_are_found(corpus_factory) -> None:
    corpus = corpus_factory(2000, seed=5, n_poison=0, n_conflict=20)
    got = set(flagged(corpus.records))
    assert len(got & corpus.ids("conflict")) >= 20  # each planted pair has one side flagged


def test_same_question_under_different_system_prompts_is_compared() -> None:
    """The system prompt is not part of the question: two shops' system prompts, one question."""
    def with_system(rid: str, system: str, answer: str) -> Record:
        return Record(rid, 1, [Message("system", system), Message("user", PROMPT),
                               Message("assistant", answer)])

    yes = "可以开专票，请提供公司抬头和税号，我们三个工作日内寄出。"
    records = [with_system("a", "你是A店的客服助手。", yes),
               with_system("b", "You are the support agent of shop B. Be brief.", yes),
               with_system("c", "你是C店的客服，回答要礼貌。",
                           "抱歉，我们不支持开具任何发票，请勿再问。")]
    report = screen(records, config=ONLY)
    assert [f.record_id for f in report.findings] == ["c"]
    assert set(report.findings[0].related_ids) == {"a", "b"}
