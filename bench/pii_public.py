"""Public PII sets for ``bench/pii.py``: loaded when present, never fetched.

Neither set ships with sealtune and the benchmark fetches nothing at run
time; get them once, keep them outside the repository (their licences
differ from sealtune's), and point ``--public-dir`` at the folder (default
``bench/data/public``):

* presidio-research's ``synth_dataset_v2.json`` (English, 1,500 synthetic
  sentences; MIT licence, Microsoft): from https://github.com/microsoft/presidio-research,
  file ``data/synth_dataset_v2.json``. Save it as ``synth_dataset_v2.json``.
* cn-pii-bench's fixtures (Chinese and mixed, JSON lines; code MIT, corpus
  suggested CC-BY 4.0 by its author): from https://github.com/Jzh-li/cn-pii-bench,
  folder ``fixtures/``: ``cases_adversarial_ext.jsonl`` (and, if wanted,
  ``cases.jsonl``, ``cases_en.jsonl``, ``cases_adversarial.jsonl``). Save them
  under their own names.

Gold types are mapped to sealtune's (table below); types sealtune has no
recognizer for (GPE, ORGANIZATION, DATE_TIME, ZIP_CODE ...) are not scored,
for any detector. cn-pii-bench gives offsets in UTF-8 bytes; they are turned
into string indices (and checked against the value it records).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pii_corpus import Record

#: presidio-research entity type -> sealtune type.
SYNTH_MAP = {
    "PERSON": "PERSON",
    "STREET_ADDRESS": "ADDRESS",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "BANK_CARD",
    "EMAIL_ADDRESS": "EMAIL",
    "IP_ADDRESS": "IP_ADDRESS",
}
#: cn-pii-bench entity type -> sealtune type.
CN_MAP = {
    "zh_phone": "PHONE",
    "phone": "PHONE",
    "zh_person_name": "PERSON",
    "person_name": "PERSON",
    "zh_address": "ADDRESS",
    "address": "ADDRESS",
    "email": "EMAIL",
    "ip_address": "IP_ADDRESS",
    "zh_id_card": "CN_ID",
    "id_card": "CN_ID",
    "bank_card": "BANK_CARD",
    "zh_bank_card": "BANK_CARD",
    "passport": "PASSPORT",
    "zh_passport": "PASSPORT",
}
SYNTH_FILE = "synth_dataset_v2.json"
CN_FILES = ("cases_adversarial_ext.jsonl", "cases_adversarial.jsonl", "cases.jsonl",
            "cases_en.jsonl")


def load_synth(path: Path) -> list[Record]:
    """presidio-research's synth_dataset_v2 (a JSON array of ``full_text`` + ``spans``)."""
    records = []
    for item in json.loads(path.read_text("utf-8")):
        rec = Record(item["full_text"])
        for span in item.get("spans") or ():
            etype = SYNTH_MAP.get(span["entity_type"])
            if etype:
                rec.spans.append((etype, span["start_position"], span["end_position"]))
        records.append(rec)
    return records


def _char_span(text: str, raw: bytes, start: int, end: int, value: str) -> tuple[int, int]:
    """String indices of a byte-offset span; falls back to finding ``value``."""
    try:
        s = len(raw[:start].decode("utf-8"))
        e = s + len(raw[start:end].decode("utf-8"))
    except UnicodeDecodeError:
        s = e = -1
    if text[s:e] != value and value:
        at = text.find(value)
        if at == -1:
            raise ValueError(f"gold value not in text at byte {start}")
        s, e = at, at + len(value)
    return s, e


def load_cn_pii_bench(path: Path) -> list[Record]:
    """A cn-pii-bench fixture file (one case per line: ``text``, ``expect[]``)."""
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            case = json.loads(line)
            text = case["text"]
            raw = text.encode("utf-8")
            rec = Record(text)
            for exp in case.get("expect") or ():
                etype = CN_MAP.get(exp["type"])
                if etype is None:
                    continue
                try:
                    s, e = _char_span(text, raw, exp["start"], exp["end"], exp.get("value", ""))
                except ValueError as exc:
                    raise ValueError(f"{path}:{lineno}: {exc}") from None
                rec.spans.append((etype, s, e))
            records.append(rec)
    return records


def public_sets(folder: Path) -> dict[str, list[Record]]:
    """The public sets present in ``folder``, by name (absent ones are left out)."""
    found: dict[str, list[Record]] = {}
    if (folder / SYNTH_FILE).is_file():
        found["synth_dataset_v2"] = load_synth(folder / SYNTH_FILE)
    for name in CN_FILES:
        if (folder / name).is_file():
            found["cn-pii-bench_" + name.removesuffix(".jsonl").removeprefix("cases_")] = \
                load_cn_pii_bench(folder / name)
    return found
