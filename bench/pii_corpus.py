"""Labelled generator of mixed Chinese/English records for the PII benchmark.

Each record is a customer-service / operations style text built from
templates, with gold spans for every planted entity, and hard negatives that
must NOT be reported (18-digit order numbers with a wrong check digit,
Luhn-failing 16-digit numbers, timestamps, version strings, hex hashes,
UUIDs, product codes, "the token is expired"). Entities appear in plain,
separated (spaces/dashes), full-width and unspaced (glued to Chinese) forms.

The name and address vocabularies here are deliberately NOT the detector's
lists: given names, English first names outside the detector's list, rare
surnames, cities outside its gazetteer and no-cue mentions are all
generated, so the PERSON/ADDRESS figures are not self-fulfilling.

Deterministic: ``generate(n, seed)`` always yields the same records.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pii_entities import (
    _needs_space,
    _negative,
    bank_card,
    cn_id,
    email,
    en_address,
    en_name,
    ip,
    passport,
    phone,
    secret,
    zh_address,
    zh_name,
)
from pii_vocab import EN_FILL, ZH_FILL

Span = tuple[str, int, int]


@dataclass
class Record:
    """A text with gold spans (type, start, end)."""

    text: str = ""
    spans: list[Span] = field(default_factory=list)

    def add(self, piece: str, etype: str | None = None) -> None:
        if etype:
            self.spans.append((etype, len(self.text), len(self.text) + len(piece)))
        self.text += piece


def _mention(r: random.Random, rec: Record, zh: bool) -> None:
    """Append one entity mention with its context template."""
    glue = "" if zh and r.random() < 0.5 else " "
    kind = r.choice(
        (
            "CN_ID", "PHONE", "PHONE", "BANK_CARD", "EMAIL", "IP_ADDRESS", "PASSPORT", "SECRET",
            "PERSON", "PERSON", "ADDRESS",
        )
    )
    if kind == "PERSON":
        _person(r, rec, zh)
        return
    if kind == "ADDRESS":
        if zh:
            rec.add(r.choice(("地址：", "我住在", "请寄到", "收货地址是", "送到")))
            rec.add(zh_address(r), "ADDRESS")
        else:
            rec.add(r.choice(("Ship to ", "Address: ", "I live at ", "Office: ")))
            rec.add(en_address(r), "ADDRESS")
        rec.add("。" if zh else ". ")
        return
    if kind == "SECRET":
        prefix, value, suffix = secret(r)
        rec.add(prefix)
        rec.add(value, "SECRET")
        rec.add(suffix + (" 。" if zh else " "))
        return
    if kind == "IP_ADDRESS" and r.random() < 0.25:
        value = ip(r)
        rec.add(r.choice(("server ", "连接 ", "endpoint ")))
        if ":" in value:
            rec.add("[")
            rec.add(value, kind)
            rec.add("]:443 ")
        else:
            rec.add(value, kind)
            rec.add(r.choice((":8080 ", "/24 ", ":22，")))
        return
    value: str = {
        "CN_ID": cn_id,
        "PHONE": phone,
        "BANK_CARD": bank_card,
        "EMAIL": email,
        "IP_ADDRESS": ip,
        "PASSPORT": passport,
    }[kind](r)  # type: ignore[operator]
    cues_zh = {
        "CN_ID": ("身份证号", "证件号码：", "身份证"),
        "PHONE": ("手机", "联系电话：", "请拨打", "电话"),
        "BANK_CARD": ("卡号", "银行卡", "退款到"),
        "EMAIL": ("邮箱", "请发邮件到", "邮件："),
        "IP_ADDRESS": ("登录IP", "来源地址", "服务器"),
        "PASSPORT": ("护照号码：", "护照号"),
    }
    cues_en = {
        "CN_ID": ("ID card", "resident ID:"),
        "PHONE": ("call me at", "phone:", "tel"),
        "BANK_CARD": ("card number", "paid with card", "card"),
        "EMAIL": ("email", "reach me at"),
        "IP_ADDRESS": ("from IP", "server"),
        "PASSPORT": ("passport no.", "passport number"),
    }
    rec.add(r.choice(cues_zh[kind] if zh else cues_en[kind]) + glue)
    rec.add(value, kind)
    rec.add(r.choice(("，", "。", "", " ")) if zh else r.choice((". ", ", ", " ")))


def _person(r: random.Random, rec: Record, zh: bool) -> None:
    roll = r.random()
    if zh:
        name = zh_name(r)
        if roll < 0.45:
            rec.add(r.choice(("我叫", "客户", "联系人：", "收件人", "患者", "姓名：")))
            rec.add(name, "PERSON")
            rec.add(r.choice(("，", "。", "说")))
        elif roll < 0.75:
            rec.add(r.choice(("请转告", "感谢", "已通知", "")))
            rec.add(name, "PERSON")
            rec.add(r.choice(("先生", "女士", "老师", "经理")) + "，")
        else:
            rec.add(r.choice(("昨天", "后来", "")))
            rec.add(name, "PERSON")
            rec.add(r.choice(("又打来一次。", "没有回复。", "已经签收了。")))
        return
    name = en_name(r)
    if roll < 0.4:
        rec.add(r.choice(("My name is ", "Name: ", "Dear ", "Regards, ")))
    elif roll < 0.7:
        rec.add(r.choice(("Mr. ", "Ms. ", "Dr. ", "Mrs. ")))
    else:
        rec.add(r.choice(("Forwarded to ", "Spoke with ", "Approved by ")))
    rec.add(name, "PERSON")
    rec.add(r.choice((", ", ". ")))


def make_record(r: random.Random) -> Record:
    rec = Record()
    for _ in range(r.randint(3, 9)):
        zh = r.random() < 0.6
        if _needs_space(rec.text):
            rec.add(" ")
        roll = r.random()
        if roll < 0.5:
            rec.add(r.choice(ZH_FILL) if zh else r.choice(EN_FILL) + " ")
        elif roll < 0.62:
            rec.add(_negative(r))
        else:
            _mention(r, rec, zh)
    return rec


def make_dialogue(r: random.Random) -> Record:
    """A customer-service conversation: 4-12 turns, PII in about a quarter of them."""
    rec = Record()
    zh = r.random() < 0.65
    for turn in range(r.randint(4, 12)):
        speaker = ("用户：", "客服：") if zh else ("Customer: ", "Agent: ")
        rec.add(("\n" if turn else "") + speaker[turn % 2])
        for _ in range(r.randint(1, 3)):
            roll = r.random()
            if _needs_space(rec.text):
                rec.add(" ")
            if roll < 0.16:
                _mention(r, rec, zh if r.random() < 0.85 else not zh)
            elif roll < 0.22:
                rec.add(_negative(r))
            else:
                rec.add(r.choice(ZH_FILL) if zh else r.choice(EN_FILL) + " ")
    return rec


def generate(n: int, seed: int = 20240601, *, style: str = "dense") -> Iterator[Record]:
    """``n`` labelled records, deterministic for a given seed.

    ``dense``: short mixed records, one or more entities or hard negatives in
    almost every one (stresses the validators). ``dialogue``: multi-turn
    customer-service conversations with PII in about one sentence in six,
    closer to the fine-tuning logs sealtune is for.
    """
    r = random.Random(seed)
    make = make_dialogue if style == "dialogue" else make_record
    for _ in range(n):
        yield make(r)


def write_jsonl(
    path: Path, n: int, *, seed: int = 20240601, on_record: Callable[[Record], None] | None = None
) -> None:
    """Write ``n`` records as ``{"id", "text", "spans"}`` JSON lines."""
    with path.open("w", encoding="utf-8") as fh:
        for i, rec in enumerate(generate(n, seed)):
            fh.write(
                json.dumps({"id": i, "text": rec.text, "spans": rec.spans}, ensure_ascii=False)
            )
            fh.write("\n")
            if on_record:
                on_record(rec)


if __name__ == "__main__":
    import sys

    for rec in generate(4, style=sys.argv[1] if len(sys.argv) > 1 else "dense"):
        print(rec.text)
        for t, s, e in rec.spans:
            print("   ", t, repr(rec.text[s:e]))
