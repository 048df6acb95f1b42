"""Redaction operators and the Redactor: consistency, surrogate validity, tokens, overlaps."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Any

import phonenumbers
import pytest
from stdnum import luhn
from stdnum.cn import ric

from sealtune.data.pii import Entity
from sealtune.data.policy import Policy, parse_policy
from sealtune.data.records import Message, Record
from sealtune.data.redact import (
    OPERATORS,
    DatasetKeys,
    Redactor,
    detokenize,
    register_operator,
    tokenize,
)
from sealtune.data.redact.token import TOKEN_PATTERN
from sealtune.errors import ConfigError, IntegrityError, UsageError
from sealtune.workspace import Workspace

KEYS = DatasetKeys(bytes(range(32)))
OTHER = DatasetKeys(bytes(range(1, 33)))


def op(name: str, **options: Any) -> Any:
    return OPERATORS[name](options, "test")


def pseudo(value: str, entity_type: str, keys: DatasetKeys = KEYS) -> str:
    return str(op("pseudonym").apply(value, entity_type=entity_type, keys=keys))


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def policy(redaction: dict[str, Any], **rest: Any) -> Policy:
    return parse_policy({"version": 1, "redaction": redaction, **rest}, source="p.yaml")


def ent(text: str, value: str, etype: str, score: float = 0.9) -> Entity:
    start = text.index(value)
    return Entity(etype, start, start + len(value), score, "test")


# -- keys -------------------------------------------------------------------------------


def test_dataset_keys() -> None:
    keys = DatasetKeys.generate()
    assert len(keys.secret) == 32 and DatasetKeys.generate().secret != keys.secret
    assert keys.secret.hex() not in repr(keys) and "hidden" in repr(keys.token_key)
    with pytest.raises(UsageError, match="32 bytes"):
        DatasetKeys(b"short")


def test_derived_dataset_keys_repeat_per_context_and_differ_across() -> None:
    master = bytes(range(32))
    a, b = DatasetKeys.derive(master, "step-1"), DatasetKeys.derive(master, "step-1")
    assert a.secret == b.secret and a.secret != master
    assert DatasetKeys.derive(master, "step-2").secret != a.secret
    assert DatasetKeys.derive(bytes(32), "step-1").secret != a.secret
    for bad_master, context in ((b"short", "x"), (master, "")):
        with pytest.raises(UsageError):
            DatasetKeys.derive(bad_master, context)


# -- pseudonyms: consistency ------------------------------------------------------------


def test_pseudonyms_are_consistent_across_records_and_spellings() -> None:
    a = pseudo("13800138000", "PHONE")
    assert pseudo("13800138000", "PHONE") == a
    assert pseudo("+86 138 0013 8000", "PHONE").replace(" ", "").endswith(a)
    assert nfkc(pseudo("１３８００１３８０００", "PHONE")) == a
    assert pseudo("ZHOU.NA@QQ.COM", "EMAIL") == pseudo("zhou.na@qq.com", "EMAIL")
    assert pseudo("周娜", "PERSON") == pseudo("周娜", "PERSON") != pseudo("周杰", "PERSON")
    # The same value in two records of one dataset gets one surrogate.
    redactor = Redactor(policy({}), keys=KEYS)
    texts = ["call 13800138000 now", "我的手机13800138000"]
    out = [redactor.redact_text(t, [ent(t, "13800138000", "PHONE")]).text for t in texts]
    assert out[0].split()[1] == out[1][4:] == a


def test_different_dataset_keys_give_different_surrogates() -> None:
    for value, etype in [("13800138000", "PHONE"), ("440106196506030040", "CN_ID"),
                         ("6222225522956558", "BANK_CARD"), ("zhou@qq.com", "EMAIL"),
                         ("周娜", "PERSON"), ("E12345678", "PASSPORT")]:
        assert pseudo(value, etype) != pseudo(value, etype, OTHER), etype
        assert pseudo(value, etype) != value


def test_types_are_separate_domains() -> None:
    assert pseudo("12345678", "PASSPORT") != pseudo("12345678", "EMPLOYEE_ID")


# -- pseudonyms: surrogate validity ------------------------------------------------------


def test_cn_id_surrogates_have_valid_check_digits() -> None:
    for i in range(300):
        value = f"11010519{60 + i % 40:02d}0{1 + i % 9}{1 + i % 28:02d}{i % 1000:03d}"
        value += ric.calc_check_digit(value + "0")
        fake = pseudo(value, "CN_ID")
        assert len(fake) == 18 and ric.is_valid(fake), fake
        born = ric.get_birth_date(fake)
        assert 1985 <= born.year <= 2005
    spaced = pseudo("440106 19650603 0040", "CN_ID")
    assert re.fullmatch(r"\d{6} \d{8} \d{3}[\dX]", spaced)
    assert ric.is_valid(spaced.replace(" ", ""))
    assert len(pseudo("110105491231002", "CN_ID")) == 15


def test_bank_card_surrogates_pass_luhn_with_same_shape() -> None:
    for value in ["6222225522956558", "6222 0202 0000 1234 567", "4111-1111-1111-1111",
                  "5500000000000004"]:
        fake = pseudo(value, "BANK_CARD")
        assert re.sub(r"\d", "9", fake) == re.sub(r"\d", "9", value)
        digits = re.sub(r"\D", "", fake)
        assert luhn.is_valid(digits) and digits != re.sub(r"\D", "", value)
        assert digits[:2] == "62" if value.startswith("62") else digits[0] == value[0]


@pytest.mark.parametrize("value", [
    "13800138000", "+86 138 0013 8000", "138-0013-8000", "0086 13800138000", "+8613800138000",
    "010-62345678", "(0755) 8888-1234", "+86-21-6432-1234", "+1 650-253-0000",
    "+44 7911 123456",
])
def test_phone_surrogates_are_valid_and_keep_the_format(value: str) -> None:
    fake = pseudo(value, "PHONE")
    assert re.sub(r"\d", "9", fake) == re.sub(r"\d", "9", value)  # separators and length
    original = phonenumbers.parse(value, "CN")
    parsed = phonenumbers.parse(fake, "CN")
    assert phonenumbers.is_valid_number(parsed), fake
    assert parsed.country_code == original.country_code
    assert parsed.national_number != original.national_number
    if value.endswith("13800138000") or value.startswith(("138", "+86 138")):
        assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE


def test_email_ip_person_address_passport_surrogates() -> None:
    email = pseudo("zhou.na@qq.com", "EMAIL")
    assert re.fullmatch(r"[a-z]+\.[a-z]+\d{0,2}@example\.(com|org|net)", email)
    nets = [ipaddress.ip_network(n) for n in
            ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
    for value in ["10.1.2.3", "8.8.8.8", "fe80::1", "2400:3200::1"]:
        fake = ipaddress.ip_address(pseudo(value, "IP_ADDRESS"))
        assert any(fake in n for n in nets if n.version == fake.version)
    zh = pseudo("周娜", "PERSON")
    assert 2 <= len(zh) <= 3 and all("\u4e00" <= c <= "\u9fff" for c in zh)
    assert len(pseudo("欧阳娜娜", "PERSON")) == 3
    en = pseudo("David Lee", "PERSON")
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", en)
    assert pseudo("Mr. Lee", "PERSON").startswith("Mr. ")
    assert pseudo("广州市天河区体育西路191号", "ADDRESS").endswith("号")
    assert re.fullmatch(r"\d+ \w+ \w+, \w+", pseudo("1600 Amphitheatre Parkway, Mountain View",
                                                     "ADDRESS"))
    passport = pseudo("E12345678", "PASSPORT")
    assert re.fullmatch(r"E\d{8}", passport) and passport != "E12345678"
    assert re.fullmatch(r"[A-Z]{3}-\d{6}", pseudo("EMP-123456", "EMPLOYEE_ID"))


def test_full_width_input_keeps_full_width_and_validity() -> None:
    value = "４４０１０６１９６５０６０３００４０"
    fake = pseudo(value, "CN_ID")
    assert all("\uff10" <= c <= "\uff19" or c == "Ｘ" for c in fake)
    assert ric.is_valid(nfkc(fake)) and nfkc(fake) == pseudo(nfkc(value), "CN_ID")
    card = pseudo("６２２２ ２２５５ ２２９５ ６５５８", "BANK_CARD")
    assert luhn.is_valid(nfkc(card).replace(" ", "")) and card[0] == "６"


def test_secret_is_never_pseudonymised() -> None:
    with pytest.raises(UsageError, match="never pseudonymised"):
        pseudo("sk-live-abc", "SECRET")
    redactor = Redactor(policy({"default": "pseudonym"}), keys=KEYS)
    text = "key sk_live_0123456789abcdef ok"
    result = redactor.redact_text(text, [ent(text, "sk_live_0123456789abcdef", "SECRET")])
    assert result.text == "key [SECRET] ok"
    assert redactor.operator_for("SECRET").name == "tag"


# -- mask, tag ---------------------------------------------------------------------------


def test_mask() -> None:
    assert op("mask").apply("138 0013 8000", entity_type="PHONE", keys=None) == "*** **** 8000"
    assert op("mask", char="#", keep_first=3, keep_last=2).apply(
        "13800138000", entity_type="PHONE", keys=None) == "138######00"
    assert op("mask").apply("张伟", entity_type="PERSON", keys=None) == "*伟"  # at most half kept
    assert op("mask", keep_last=0).apply("张伟", entity_type="PERSON", keys=None) == "**"
    assert op("mask").apply("１３８００１３８０００", entity_type="PHONE",
                            keys=None) == "*******８０００"
    with pytest.raises(ConfigError, match=r"test\.char: must be one character"):
        op("mask", char="ab")
    with pytest.raises(ConfigError, match=r"test\.keep_last: expected an integer"):
        op("mask", keep_last=True)


def test_tag() -> None:
    assert op("tag").apply("x", entity_type="PHONE", keys=None) == "[PHONE]"
    assert op("tag", format="<{type}>").apply("x", entity_type="EMAIL", keys=None) == "<EMAIL>"
    with pytest.raises(ConfigError, match=r"test\.format: must contain \{type\}"):
        op("tag", format="[{kind}]")


def test_operator_registry_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_operator("mask", OPERATORS["tag"])
    assert set(OPERATORS) >= {"mask", "tag", "pseudonym", "token", "drop_record", "drop_field"}


# -- tokens ------------------------------------------------------------------------------


def test_token_round_trip_only_with_the_key() -> None:
    text = "call " + tokenize("13800138000", entity_type="PHONE", keys=KEYS) + " please"
    assert "13800138000" not in text and TOKEN_PATTERN.search(text)
    events: list[tuple[Any, ...]] = []

    def audit(action: str, resource: str, *, outcome: Any = "success",
              details: dict[str, Any] | None = None) -> None:
        events.append((action, resource, outcome, details))

    assert detokenize(text, KEYS, audit=audit, resource="ds1") == "call 13800138000 please"
    assert events == [("data.detokenize", "ds1", "success",
                       {"tokens": 1, "types": {"PHONE": 1}})]
    with pytest.raises(IntegrityError, match="failed authentication"):
        detokenize(text, OTHER, audit=audit, resource="ds1")
    assert events[-1][2] == "failure" and "13800138000" not in repr(events)


def test_tokens_are_bound_to_type_and_tamper_evident() -> None:
    token = tokenize("440106196506030040", entity_type="CN_ID", keys=KEYS)
    swapped = token.replace("CN_ID", "PHONE")
    match = TOKEN_PATTERN.fullmatch(token)
    assert match is not None
    body = match.group(2)
    flipped = token.replace(body, ("A" if body[5] != "A" else "B").join([body[:5], body[6:]]))
    for bad in (swapped, flipped, "⟦TOK:PHONE:AAAA⟧"):
        with pytest.raises(IntegrityError):
            detokenize(bad, KEYS, audit=lambda *a, **k: None, resource="ds")


def test_deterministic_and_random_tokens() -> None:
    det = op("token")
    assert det.apply("v", entity_type="EMAIL", keys=KEYS) == \
        det.apply("v", entity_type="EMAIL", keys=KEYS)
    rnd = op("token", deterministic=False)
    a, b = (rnd.apply("v", entity_type="EMAIL", keys=KEYS) for _ in range(2))
    assert a != b
    assert detokenize(a + b, KEYS, audit=lambda *x, **k: None, resource="r") == "vv"


def test_detokenize_refuses_to_run_without_audit() -> None:
    token = tokenize("x", entity_type="PHONE", keys=KEYS)
    with pytest.raises(UsageError, match="needs an audit callback"):
        detokenize(token, KEYS, audit=None, resource="ds")  # type: ignore[arg-type]


def test_detokenize_writes_a_ledger_event(workspace: Workspace) -> None:
    token = tokenize("13800138000", entity_type="PHONE", keys=KEYS)
    assert detokenize(f"a {token} b {token}", KEYS, audit=workspace.audit,
                      resource="dataset:demo") == "a 13800138000 b 13800138000"
    (entry,) = list(workspace.ledger.entries(action="data.detokenize"))
    assert entry.resource == "dataset:demo" and entry.outcome == "success"
    assert entry.details["tokens"] == 2


# -- the redactor ------------------------------------------------------------------------


def test_overlapping_spans_are_replaced_as_one() -> None:
    redactor = Redactor(policy({"default": "tag", "PHONE": {"operator": "mask"}}))
    text = "id 440106196506030040 end"
    entities = [ent(text, "440106196506030040", "CN_ID", 0.99),
                Entity("PHONE", 8, 19, 0.6, "t"),  # a false claim inside
                Entity("BANK_CARD", 3, 10, 0.5, "t")]
    out = redactor.redact_text(text, entities)
    assert out.text == "id [CN_ID] end"
    assert out.counts == {("CN_ID", "tag"): 1, ("PHONE", "tag"): 1, ("BANK_CARD", "tag"): 1}
    # Partial overlap: the union is replaced, so no fragment of either survives.
    text = "a 13800138000123 b"
    out = redactor.redact_text(text, [Entity("PHONE", 2, 13, 0.9, "t"),
                                      Entity("BANK_CARD", 5, 16, 0.8, "t")])
    assert out.text == "a **********0123 b"  # the PHONE won (higher score) and masks the union
    # A secret wins over everything it overlaps.
    text = "password=13800138000"
    out = redactor.redact_text(text, [Entity("PHONE", 9, 20, 0.99, "t"),
                                      Entity("SECRET", 0, 20, 0.5, "t")])
    assert out.text == "[SECRET]"


def test_multiple_entities_use_original_offsets() -> None:
    redactor = Redactor(policy({"default": "tag"}))
    text = "张伟 13800138000 zhou@qq.com 张伟"
    spans = [ent(text, "张伟", "PERSON"), ent(text, "13800138000", "PHONE"),
             ent(text, "zhou@qq.com", "EMAIL"), Entity("PERSON", 27, 29, 0.9, "t")]
    assert redactor.redact_text(text, spans).text == "[PERSON] [PHONE] [EMAIL] [PERSON]"
    with pytest.raises(UsageError, match=r"messages\[0\]: entity span \[28, 40\)"):
        redactor.redact_text(text, [Entity("PHONE", 28, 40, 0.9, "t")], where="messages[0]")
    with pytest.raises(UsageError, match=r"entity span \[3, 3\)"):
        redactor.redact_text(text, [Entity("PHONE", 3, 3, 0.9, "t")])


def _record() -> Record:
    return Record("r1", 3, [Message("user", "我是周娜，手机13800138000"),
                            Message("assistant", "好的")],
                  extra={"category": "bank", "note": "call 13800138000", "raw": "x"},
                  source_format="openai")


def _entities(record: Record) -> list[list[Entity]]:
    text = record.messages[0].content
    return [[ent(text, "周娜", "PERSON"), ent(text, "13800138000", "PHONE")], []]


def test_redact_record_minimises_and_counts() -> None:
    record = _record()
    redactor = Redactor(policy({"default": "pseudonym", "PERSON": "tag"},
                               keep_fields=["category", "note"]), keys=KEYS)
    note = record.extra["note"]
    outcome = redactor.redact_record(record, _entities(record), entities_by_extra={
        "note": [ent(note, "13800138000", "PHONE")], "raw": [Entity("PHONE", 0, 1, 1, "t")]})
    assert outcome.record is not None and not outcome.dropped
    user = outcome.record.messages[0].content
    assert user.startswith("我是[PERSON]，手机") and "13800138000" not in user
    assert outcome.record.extra == {"category": "bank",
                                    "note": "call " + pseudo("13800138000", "PHONE")}
    assert outcome.minimised == ("raw",)
    assert outcome.counts == {("PERSON", "tag"): 1, ("PHONE", "pseudonym"): 2}
    assert outcome.by_type() == {"PERSON": 1, "PHONE": 2}
    assert outcome.by_action() == {"tag": 1, "pseudonym": 2}
    assert record.messages[0].content == "我是周娜，手机13800138000"  # input untouched


def test_drop_record_and_drop_field() -> None:
    record = _record()
    dropped = Redactor(policy({"default": "tag", "PHONE": "drop_record"})).redact_record(
        record, _entities(record))
    assert dropped.dropped and dropped.record is None
    assert dropped.drop_reason == "messages[0]: PHONE (operator drop_record)"
    assert dropped.counts[("PHONE", "drop_record")] == 1

    redactor = Redactor(policy({"default": "tag", "PHONE": "drop_field"},
                               keep_fields=["note"]))
    note = record.extra["note"]
    out = redactor.redact_record(record, _entities(record),
                                 entities_by_extra={"note": [ent(note, "13800138000", "PHONE")]})
    assert out.record is not None
    assert [m.content for m in out.record.messages] == ["", "好的"]
    assert out.record.extra == {}


def test_redact_with_an_analyzer() -> None:
    pol = policy({"default": "tag"}, keep_fields=["note"])
    redactor = Redactor(pol)
    out = redactor.redact(_record(), pol.analyzer())
    assert out.record is not None
    assert "13800138000" not in out.record.messages[0].content
    assert out.record.extra == {"note": "call [PHONE]"}


def test_redactor_needs_keys_for_keyed_operators() -> None:
    with pytest.raises(UsageError, match="need the dataset keys"):
        Redactor(policy({"default": "pseudonym"}))
    with pytest.raises(UsageError, match="need the dataset keys"):
        Redactor(policy({"default": "tag", "PHONE": "token"}))
    with pytest.raises(UsageError, match="no default rule"):
        Redactor(Policy())
    with pytest.raises(UsageError, match="2 entity lists for 1 messages"):
        Redactor(policy({"default": "tag"})).redact_record(
            Record("x", 1, [Message("user", "hi")]), [[], []])
