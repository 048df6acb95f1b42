"""Regenerate src/sealtune/demo_data/conversations.jsonl (synthetic, deterministic).

Every name, number and address here is invented: the identity numbers carry
valid GB 11643 check digits and the card numbers pass Luhn so that the PII
detectors have realistic work, but none belongs to anyone.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/sealtune/demo_data/conversations.jsonl"
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"]
GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "杰"]
EN_NAMES = ["Alice Johnson", "Brian Smith", "Carla Gomez", "David Lee", "Emma Brown"]
CITIES = ["北京市朝阳区建国路88号", "上海市浦东新区世纪大道100号", "广州市天河区体育西路191号"]


def cn_id(rng: random.Random) -> str:
    area = rng.choice(["110105", "310115", "440106"])
    birth = f"19{rng.randint(60, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = f"{area}{birth}{rng.randint(0, 999):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return body + check


def luhn_card(rng: random.Random) -> str:
    digits = [6, 2, 2, 2] + [rng.randint(0, 9) for _ in range(11)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        total += d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2)
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def record(rng: random.Random, i: int) -> dict[str, object]:
    name = rng.choice(SURNAMES) + rng.choice(GIVEN)
    phone = f"1{rng.choice([38, 39, 58, 86])}{rng.randint(0, 99999999):08d}"
    if i % 2 == 0:
        user = (
            f"你好，我是{name}，身份证号{cn_id(rng)}，手机{phone}。"
            f"我的银行卡{luhn_card(rng)}被冻结了，地址是{rng.choice(CITIES)}，请帮我处理。"
        )
        reply = "您好，已为您提交解冻申请，预计24小时内处理完毕，请留意短信通知。"
    else:
        en = rng.choice(EN_NAMES)
        user = (
            f"Hi, this is {en}. My card {luhn_card(rng)} was charged twice. "
            f"Reach me at {en.split()[0].lower()}{i}@example.com or +86 {phone}."
        )
        reply = (
            "Sorry about that. I have opened a refund request; you will get an email within 2 days."
        )
    return {
        "id": f"conv-{i:04d}",
        "messages": [
            {"role": "system", "content": "你是银行客服助手。You are a bank support assistant."},
            {"role": "user", "content": user},
            {"role": "assistant", "content": reply},
        ],
    }


def main() -> None:
    rng = random.Random(20261121)
    lines = [json.dumps(record(rng, i), ensure_ascii=False) for i in range(60)]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} records to {OUT}")


if __name__ == "__main__":
    main()
