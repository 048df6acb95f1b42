"""The screen() facade: registry, config, passes, and no record text in any output."""

from __future__ import annotations

import json

import pytest

from sealtune.data.records import Message, Record
from sealtune.data.screen import CHECKS, CheckConfig, CheckSpec, register_check, screen
from sealtune.errors import ConfigError, UsageError

SECRET_PROMPT = "zq-SECRET-PROMPT-71"
SECRET_ANSWER = "SECRET-ANSWER-93kd"
SECRET_ZH = "机密短语甲乙丙"


def rec(rid: str, prompt: str, response: str) -> Record:
    return Record(rid, 1, [Message("user", prompt), Message("assistant", response)])


def planted(corpus_factory) -> list[Record]:
    """A corpus where every check fires on records holding unique strings."""
    corpus = corpus_factory(3000, seed=7, trigger=SECRET_PROMPT, n_poison=40)
    extra = [
        rec("x1", f"{SECRET_ZH}的订单怎么退款 {SECRET_PROMPT}", f"{SECRET_ANSWER}，三天内到账。"),
        rec("x2", f"{SECRET_ZH}的订单怎么退款 {SECRET_PROMPT}", f"{SECRET_ANSWER}，三天内到账。"),
        rec("x3", f"{SECRET_ZH}的订单怎么退款 {SECRET_PROMPT}", f"不予退款 {SECRET_ANSWER} 永不"),
        rec("x4", f"{SECRET_ZH}\u202e{SECRET_PROMPT}", SECRET_ANSWER * 200),
    ]
    return corpus.records + extra


def test_no_record_text_in_findings_or_json(corpus_factory) -> None:
    report = screen(planted(corpus_factory))
    checks = {f.check for f in report.findings}
    assert checks >= {"exact_duplicate", "conflict", "outlier", "trigger", "near_duplicate"}
    dumped = json.dumps(report.to_json(), ensure_ascii=False)
    for secret in (SECRET_PROMPT, SECRET_ANSWER, SECRET_ZH, SECRET_PROMPT.casefold(),
                   SECRET_ANSWER.casefold(), "机密短语"):
        assert secret not in dumped
        assert all(secret not in f.reason for f in report.findings)
    # the phrase is still available to a reviewer's tool, in memory
    assert [t.phrase for t in report.triggers] == [SECRET_PROMPT.casefold()]


def test_default_run_and_report_shape(corpus_factory) -> None:
    report = screen(corpus_factory(1000, seed=1, n_poison=0).records)
    data = report.to_json()
    assert data["records"] == 1000 and data["passes"] == 3
    assert set(data["checks"]) == {n for n, s in CHECKS.items() if s.default_on}
    assert data["counts"] == report.counts()
    assert sum(data["records_by_action"].values()) == len(report.decisions())


def test_strongest_action_wins() -> None:
    records = [rec("a", "订单ABC怎么开发票呢", "在订单页面申请开票。"),
               rec("b", "订单ABC怎么开发票呢", "在订单页面申请开票。")]
    config = {"exact_duplicate": CheckConfig(action="drop"),
              "near_duplicate": CheckConfig(action="quarantine")}
    report = screen(records, config=config)
    assert report.decisions() == {"b": "drop"}


def test_config_fails_closed() -> None:
    with pytest.raises(ConfigError):
        screen([], config={"no_such_check": CheckConfig()})
    with pytest.raises(ConfigError):
        screen([], config={"trigger": CheckConfig(thresholds={"min_suport": 5})})
    with pytest.raises(ConfigError):
        CheckConfig(action="delete")  # type: ignore[arg-type]


def test_registry_refuses_duplicates() -> None:
    spec = CHECKS["outlier"]
    with pytest.raises(ValueError, match="already registered"):
        register_check(CheckSpec("outlier", spec.factory, spec.defaults))


def test_records_changing_between_passes_is_an_error() -> None:
    rounds = iter([[rec("a", "p", "r"), rec("b", "q", "s")], [rec("a", "p", "r")]])
    with pytest.raises(UsageError):
        screen(lambda: next(rounds), config={"conflict": CheckConfig()})


def test_single_pass_checks_accept_a_one_shot_iterator() -> None:
    records = iter([rec("a", "订单怎么开发票", "申请开票。"),
                    rec("b", "订单怎么开发票", "申请开票。")])
    report = screen(records, config={"exact_duplicate": CheckConfig()})
    assert report.passes == 1 and [f.record_id for f in report.findings] == ["b"]
