"""The data policy file: strict loading, the commented default, digests."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealtune.data.policy import (
    Policy,
    RedactionRule,
    ScreeningRule,
    default_policy,
    load_policy,
    parse_policy,
    render_default_policy,
    write_default_policy,
)
from sealtune.data.redact import DatasetKeys, Redactor
from sealtune.errors import ConfigError, UsageError


def load(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text, "utf-8")
    return load_policy(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = info.value.message
    assert message.startswith(str(tmp_path / "policy.yaml"))
    return message[len(str(tmp_path)) + 1:]


def test_default_policy_round_trips_through_the_commented_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write_default_policy(path)
    text = path.read_text("utf-8")
    assert text.count("\n#") > 20  # commented
    loaded = load_policy(path)
    assert loaded == default_policy()
    assert loaded.digest() == default_policy().digest()
    assert loaded.source == str(path)
    with pytest.raises(UsageError, match="already exists"):
        write_default_policy(path)
    write_default_policy(path, overwrite=True)


def test_default_policy_is_safe() -> None:
    policy = default_policy()
    assert policy.redaction["default"] == RedactionRule("pseudonym")
    assert policy.redaction["SECRET"].operator == "tag"
    assert policy.redaction["ADDRESS"].operator == "tag"
    assert policy.redaction["CN_ID"].operator == "pseudonym"
    assert policy.on_error == "fail" and policy.keep_fields == ()
    actions = {name: rule.action for name, rule in policy.screening.items()}
    assert actions["exact_duplicate"] == actions["near_duplicate"] == "drop"
    assert any(a == "quarantine" for n, a in actions.items() if "trigger" in n)
    assert all(a == "flag" for n, a in actions.items()
               if "duplicate" not in n and "trigger" not in n)


def test_sections_left_out_take_the_default(tmp_path: Path) -> None:
    policy = load(tmp_path, "version: 1\nkeep_fields: [lang, category]\n")
    assert policy.keep_fields == ("category", "lang")
    assert policy.redaction == default_policy().redaction
    assert policy.screening == default_policy().screening
    partial = load(tmp_path, "version: 1\nredaction: {PHONE: tag}\n")
    assert partial.redaction == {"PHONE": RedactionRule("tag", {"format": "[{type}]"}),
                                 "default": RedactionRule("pseudonym")}


def test_full_policy(tmp_path: Path) -> None:
    policy = load(tmp_path, r"""
version: 1
on_error: skip
keep_fields: [category]
redaction:
  default: {operator: tag}
  PHONE: {operator: mask, keep_last: 2, char: "#"}
  CN_ID: token
  EMPLOYEE_ID: drop_record
  SECRET: drop_field
recognizers:
  - name: employee_id
    type: EMPLOYEE_ID
    pattern: 'EMP-\d{6}'
    context: [工号]
screening:
  exact_duplicate: drop
  near_duplicate: {action: quarantine, thresholds: {threshold: 0.9}}
""")
    assert policy.on_error == "skip"
    assert policy.redaction["PHONE"] == RedactionRule(
        "mask", {"char": "#", "keep_first": 0, "keep_last": 2})
    assert policy.redaction["CN_ID"] == RedactionRule("token", {"deterministic": True})
    assert policy.screening["near_duplicate"] == ScreeningRule("quarantine", {"threshold": 0.9})
    assert set(policy.screening) == {"exact_duplicate", "near_duplicate"}
    # The custom recognizer reaches the analyzer and its type the redactor.
    analyzer = policy.analyzer()
    text = "工号 EMP-123456"
    entities = analyzer.analyze(text)
    assert [(e.type, text[e.start:e.end]) for e in entities] == [("EMPLOYEE_ID", "EMP-123456")]
    redactor = Redactor(policy, keys=DatasetKeys.generate())
    assert redactor.redact_text(text, entities).effect == "drop_record"


def test_screen_config() -> None:
    import sealtune.data.screen as screen
    config = parse_policy({"version": 1, "screening": {
        "near_duplicate": {"action": "drop", "thresholds": {"threshold": 0.7}}}}).screen_config()
    assert config == {"near_duplicate": screen.CheckConfig("drop", {"threshold": 0.7})}


STRICT = [
    ("version: 1\nredactoin: {}\n",
     "policy.yaml: redactoin: unknown key (known: version, on_error, keep_fields, redaction, "
     "recognizers, detection, screening, unsafe_no_dataset_wide_redaction)"),
    ("version: 1\ndetection: {ner: yes please}\n",
     "policy.yaml: detection.ner: must be true or false"),
    ("version: 1\ndetection: {spacy: true}\n",
     "policy.yaml: detection.spacy: unknown key (known: ner)"),
    ("version: 1\ndetection: true\n", "policy.yaml: detection: must be a mapping"),
    ("redaction: {}\n", "policy.yaml: version: required, must be 1"),
    ("version: 2\n", "policy.yaml: version: required, must be 1"),
    ("version: 1\nredaction:\n  PHONE: {operator: maskk}\n",
     "policy.yaml: redaction.PHONE.operator: unknown operator 'maskk' (known: drop_field, "
     "drop_record, mask, pseudonym, tag, token)"),
    ("version: 1\nredaction:\n  PHONE: maskk\n",
     "policy.yaml: redaction.PHONE.operator: unknown operator 'maskk'"),
    ("version: 1\nredaction:\n  PHONE: {keep_last: 4}\n",
     "policy.yaml: redaction.PHONE.operator: required, an operator name"),
    ("version: 1\nredaction:\n  PHONE: {operator: mask, keep_lst: 4}\n",
     "policy.yaml: redaction.PHONE.keep_lst: unknown option for operator mask (known: char, "
     "keep_first, keep_last)"),
    ("version: 1\nredaction:\n  PHONE: {operator: mask, keep_last: '4'}\n",
     "policy.yaml: redaction.PHONE.keep_last: expected an integer"),
    ("version: 1\nredaction:\n  PHONE: {operator: token, deterministic: yes please}\n",
     "policy.yaml: redaction.PHONE.deterministic: expected true or false"),
    ("version: 1\nredaction:\n  PHONE: {operator: pseudonym, locale: zh}\n",
     "policy.yaml: redaction.PHONE.locale: unknown option for operator pseudonym (known: none)"),
    ("version: 1\nredaction:\n  PHONES: tag\n",
     "policy.yaml: redaction.PHONES: unknown entity type (known: default, CN_ID, PHONE"),
    ("version: 1\nredaction:\n  SECRET: pseudonym\n",
     "policy.yaml: redaction.SECRET.operator: pseudonym would keep (part of) the secret; "
     "secrets are only removed (allowed: drop_field, drop_record, tag)"),
    ("version: 1\nredaction:\n  SECRET: {operator: mask, keep_last: 0}\n",
     "policy.yaml: redaction.SECRET.operator: mask would keep"),
    ("version: 1\nredaction: [PHONE]\n", "policy.yaml: redaction: must be a mapping"),
    ("version: 1\nkeep_fields: category\n",
     "policy.yaml: keep_fields: must be a list of field names"),
    ("version: 1\nkeep_fields: [a, a]\n", "policy.yaml: keep_fields: a field is listed twice"),
    ("version: 1\non_error: ignore\n", "policy.yaml: on_error: must be fail or skip"),
    ("version: 1\non_error: no\n", "policy.yaml: on_error: must be fail or skip"),
    ("version: 1\nrecognizers:\n  - {name: x1, type: EMP_ID, pattern: '(unclosed'}\n",
     "policy.yaml: recognizers[0].pattern: invalid regular expression"),
    ("version: 1\nrecognizers:\n  - {name: x1, type: EMP_ID, pattern: 'E', colour: red}\n",
     "policy.yaml: recognizers[0]: unknown keys ['colour']"),
    ("version: 1\nrecognizers:\n  - {name: x1, type: E_ID, pattern: a}\n"
     "  - {name: x1, type: E_ID, pattern: b}\n",
     "policy.yaml: recognizers[1].name: 'x1' is already used"),
    ("version: 1\nrecognizers:\n  - {name: x1, type: E_ID, pattern: a, validator: nope}\n",
     "policy.yaml: recognizers[0].validator: unknown validator 'nope'"),
    ("version: 1\nrecognizers: {name: x}\n",
     "policy.yaml: recognizers: must be a list of mappings"),
    ("version: 1\nscreening:\n  dedupe: drop\n", "policy.yaml: screening.dedupe: unknown check"),
    ("version: 1\nscreening:\n  exact_duplicate: delete\n",
     "policy.yaml: screening.exact_duplicate.action: must be flag, drop or quarantine"),
    ("version: 1\nscreening:\n  exact_duplicate: {action: drop, when: always}\n",
     "policy.yaml: screening.exact_duplicate.when: unknown key (known: action, thresholds)"),
    ("version: 1\nscreening:\n  near_duplicate: {action: drop, thresholds: {threshold: high}}\n",
     "policy.yaml: screening.near_duplicate.thresholds.threshold: must be a number"),
    ("version: 1\nscreening:\n  near_duplicate: {action: drop, thresholds: {threshold: true}}\n",
     "policy.yaml: screening.near_duplicate.thresholds.threshold: must be a number"),
    ("version: 1\nversion: 1\n", "policy.yaml:2: duplicate key 'version'"),
    ("version: 1\nredaction:\n  PHONE: tag\n  PHONE: mask\n",
     "policy.yaml:4: duplicate key 'PHONE'"),
    ("version: 1\nredaction: {PHONE: [tag\n", "policy.yaml:3:1: not valid YAML"),
    ("- version: 1\n", "policy.yaml: the policy: must be a mapping"),
    ("", "policy.yaml: the policy: must be a mapping"),
    ("version: 1\n1: x\n", "policy.yaml: the policy: keys must be strings"),
]


@pytest.mark.parametrize(("text", "expected"), STRICT)
def test_strictness_names_file_and_yaml_path(tmp_path: Path, text: str, expected: str) -> None:
    message = error(tmp_path, text)
    assert message.startswith(expected), message


def test_unknown_threshold_is_named() -> None:
    import sealtune.data.screen  # noqa: F401
    with pytest.raises(ConfigError, match=r"p\.yaml: screening\.near_duplicate\.thresholds\."
                                          r"jacard: unknown threshold \(known: threshold\)"):
        parse_policy({"version": 1, "screening": {
            "near_duplicate": {"action": "drop", "thresholds": {"jacard": 0.8}}}},
            source="p.yaml")


def test_custom_type_is_known_only_with_its_recognizer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"redaction\.EMP_ID: unknown entity type"):
        load(tmp_path, "version: 1\nredaction: {EMP_ID: tag}\n")
    policy = load(tmp_path, "version: 1\nredaction: {EMP_ID: tag}\nrecognizers:\n"
                            "  - {name: emp, type: EMP_ID, pattern: 'EMP-\\d+'}\n")
    assert policy.redaction["EMP_ID"].operator == "tag"


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy file not found") as info:
        load_policy(tmp_path / "nope.yaml")
    assert "policy init" in (info.value.hint or "")
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"version: 1\nx: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_policy(bad)


def test_digest_is_stable_and_canonical(tmp_path: Path) -> None:
    a = load(tmp_path, "version: 1\nkeep_fields: [b, a]\nredaction:\n  PHONE: tag\n"
                       "  default: pseudonym\n")
    b = load(tmp_path, "redaction:\n  default: {operator: pseudonym}\n"
                       "  PHONE: {operator: tag, format: '[{type}]'}\n"
                       "keep_fields: [a, b]\nversion: 1\non_error: fail\n")
    assert a == b and a.digest() == b.digest()
    assert len(a.digest()) == 64 and a.digest() == a.digest()
    c = load(tmp_path, "version: 1\nkeep_fields: [a, b]\nredaction:\n  PHONE: mask\n")
    assert c.digest() != a.digest()
    redaction_only = ("keep_fields", "redaction", "recognizers")
    assert c.digest(sections=("screening",)) == a.digest(sections=("screening",))
    assert c.digest(sections=redaction_only) != a.digest(sections=redaction_only)
    assert "version" in render_default_policy()


def test_default_policy_runs_only_checks_that_are_on_by_default() -> None:
    """Optional checks (extra packages, e.g. the embedding model) stay opt-in."""
    from sealtune.data.screen import CHECKS

    screening = default_policy().screening
    assert "embedding_outlier" in CHECKS and "embedding_outlier" not in screening
    assert set(screening) == {n for n, spec in CHECKS.items() if spec.default_on}
