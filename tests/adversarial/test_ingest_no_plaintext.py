"""After ``data scan`` and ``data ingest``, no planted PII is anywhere in plaintext.

Unique values (resident IDs, mobile numbers, card numbers, e-mails, Chinese
and English names, some written in full-width digits) are planted in the
input; each name also appears where no detector finds it (the assistant's
``<name>您好``, a later record's ``已转交<name>处理``, lower case), so only
record- and dataset-wide redaction can remove it. The CLI runs as a
subprocess with ``TMPDIR`` pointed at a directory of the test's own;
afterwards every file under the workspace and that temp dir is searched for
every value, in UTF-8 and UTF-16 (both byte orders), as written and in its
full-width and ASCII forms. stdout and stderr are
searched too. The sealed dataset, opened in memory, must hold none of them
either (redaction, not only encryption).
"""

from __future__ import annotations

import json
import random
import secrets
import subprocess
from pathlib import Path

from sealtune.data.store import read_dataset
from sealtune.workspace import Workspace

from ..conftest import cli_env
from ..conftest import run as cli_run

COMPOUND = ["欧阳", "司马", "慕容", "皇甫", "诸葛"]
GIVEN = "震霆蔚岚秋笛云舒晓峰静怡珂瑶"
EN_FIRST = ["Quentin", "Ottoline", "Zebulon", "Philippa", "Barnaby", "Winifred"]
EN_LAST = ["Rasmussen", "Hargreave", "Ellingham", "Thistlewood", "Okonkwo", "Pemberton"]


def _cn_id(rng: random.Random) -> str:
    body = f"440106{rng.randint(1960, 1999)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" \
           f"{rng.randint(0, 999):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def _luhn(rng: random.Random) -> str:
    digits = [4, 5, 3, 9] + [rng.randint(0, 9) for _ in range(11)]
    total = sum(d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2)
                for i, d in enumerate(reversed(digits)))
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def fullwidth(text: str) -> str:
    """ASCII letters, digits and punctuation as their full-width forms (U+FF01..U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c)
                   for c in text)


def plant(path: Path, rng: random.Random, n: int = 24) -> list[str]:
    """Write ``n`` conversations carrying unique PII; return every planted value."""
    values: list[str] = []
    lines = []
    previous = ""
    for i in range(n):
        zh_name = rng.choice(COMPOUND) + "".join(rng.sample(GIVEN, 2))
        en_name = f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
        phone = f"13{rng.randint(5, 9)}{rng.randint(10**7, 10**8 - 1)}"
        wide_phone = f"13{rng.randint(5, 9)}{rng.randint(10**7, 10**8 - 1)}"
        ident, card = _cn_id(rng), _luhn(rng)
        email = f"{secrets.token_hex(5)}@example.org"
        values += [zh_name, phone, wide_phone, ident, card, email]
        if i % 3 == 0:
            values.append(en_name)
            user = (f"Hi, this is {en_name}. Call me at +86 {phone}, my card is {card}, "
                    f"email {email}. Resident ID {ident}. 手机也可以打{fullwidth(wide_phone)}。"
                    f"我是{zh_name}。")
        else:
            user = (f"你好，我是{zh_name}，手机{phone}，备用电话{fullwidth(wide_phone)}，"
                    f"身份证号{fullwidth(ident)}，银行卡{card}，邮箱{email}，退款还没到账。")
        answer = f"{zh_name}您好，已为您登记，工单{i}。"
        if i % 3 == 0:
            answer += f" Noted, {en_name.lower()}."
        if i > 0:
            answer += f"另：{previous}的工单已转交处理。"  # detected in the record before
        previous = zh_name
        lines.append(json.dumps({"id": f"t{i}", "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer}]}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return values


def needles(values: list[str]) -> set[bytes]:
    out: set[bytes] = set()
    for value in values:
        for form in {value, fullwidth(value)}:
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                out.add(form.encode(encoding))
    return out


def scan_tree(root: Path, wanted: set[bytes]) -> tuple[int, list[str]]:
    files, hits = 0, []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            files += 1
            hits += [f"{path}: {n[:12]!r}" for n in wanted if n in data]
    return files, hits


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    res = cli_run(env, *args)
    assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-2000:])
    return res


def test_no_planted_value_anywhere_after_ingest(tmp_path: Path) -> None:
    home, tmp, incoming = tmp_path / "home", tmp_path / "tmp", tmp_path / "incoming"
    incoming.mkdir()
    env = cli_env(tmp_path, TMP=str(tmp), TEMP=str(tmp))
    raw = incoming / "raw.jsonl"
    values = plant(raw, random.Random(secrets.randbits(32)))
    wanted = needles(values)
    outputs = [run(env, "init"),
               run(env, "data", "scan", str(raw)),
               run(env, "data", "scan", str(raw), "--json"),
               run(env, "data", "ingest", str(raw), "--name", "planted", "--shred-original"),
               run(env, "data", "show", "planted"),
               run(env, "data", "export-bom", "planted")]
    assert not raw.exists()
    for res in outputs:
        for text in (res.stdout, res.stderr):
            assert not [v for v in values if v in text or fullwidth(v) in text]
    files, hits = scan_tree(home, wanted)
    assert files >= 7 and hits == [], hits[:5]
    assert scan_tree(tmp, wanted)[1] == []
    log = run(env, "audit", "log", "--json").stdout
    actions = [json.loads(line)["action"] for line in log.splitlines() if line.strip()]
    assert {"data.scan", "data.ingest", "data.shred"} <= set(actions)
    ws = Workspace.open(home, passphrase=env["SEALTUNE_PASSPHRASE"])
    try:
        text = json.dumps([r.to_json() for r in read_dataset(ws, "planted")],
                          ensure_ascii=False)
    finally:
        ws.close()
    assert not [v for v in values if v in text or fullwidth(v) in text]
