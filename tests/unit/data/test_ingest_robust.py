"""One odd record never aborts a skip-mode ingest, and a fail-mode error says where.

The records are real inputs that used to crash the stage with
``--on-error skip``: a 5000-digit number (Python's int-conversion limit,
``ValueError: Exceeds the limit (4300 digits)``) and a lone surrogate escape
``"\\ud800"`` (a string that cannot be encoded as UTF-8, so sealing failed
after everything else had run).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealtune.data.detections import Detections, redaction_pass
from sealtune.data.findings import PiiStats
from sealtune.data.formats import DataFormatError
from sealtune.data.ingest import ingest, scan
from sealtune.data.passes import RecordPasses, input_facts
from sealtune.data.pii import Analyzer, Entity
from sealtune.data.policy import default_policy
from sealtune.data.records import Record
from sealtune.data.redact import DatasetKeys, RedactionOutcome, Redactor
from sealtune.data.store import read_dataset
from sealtune.workspace import Workspace

CANARY = "canary-7f3a9c"


TOPICS = [("Can I change the colour of my sofa order?", "Yes, within two days of ordering."),
          ("Why was my card declined at checkout?", "The bank flagged it; please call them."),
          ("How long does express delivery to Lyon take?", "Usually one to two working days."),
          ("Do you ship spare parts for the 2019 kettle?", "Only the lid and the filter."),
          ("My invoice lists the wrong VAT number.", "Send the right one and we reissue it."),
          ("Is the winter jacket machine washable?", "At thirty degrees, inside out."),
          ("Where can I recycle the old batteries?", "Any of our stores takes them back."),
          ("The app logs me out every few minutes.", "Update to the latest version first."),
          ("Can I pay for a gift card with points?", "Points cover up to half the value."),
          ("Does the warranty cover water damage?", "No, only manufacturing defects.")]


def chat(i: int, user: str = "") -> str:
    question, answer = TOPICS[i % len(TOPICS)]
    return json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": user or question},
                                                   {"role": "assistant", "content": answer}]})


BAD = [
    # a 5000-digit number in an extra field, and one as the id
    '{"id": "big", "n": ' + "7" * 5000 + ', "messages": [{"role": "user", "content": "'
    + CANARY + '"}]}',
    '{"id": ' + "9" * 5000 + ', "messages": [{"role": "user", "content": "x"}]}',
    # lone surrogates: in a turn, in an extra field's key, in the id
    '{"id": "s1", "messages": [{"role": "user", "content": "' + CANARY + ' \\ud800"}]}',
    '{"id": "s2", "\\udfff": 1, "messages": [{"role": "user", "content": "y"}]}',
    '{"id": "\\uDBFF", "messages": [{"role": "user", "content": "z"}]}',
]


def write_input(path: Path, *, array: bool = False) -> list[int]:
    """Good records with the bad ones between them; returns the bad ones' line numbers."""
    lines = [chat(i) for i in range(8)]
    bad_lines = []
    for k, bad in enumerate(BAD):
        lines.insert(1 + 2 * k, bad)
        bad_lines.append(2 + 2 * k)
    # a valid surrogate *pair* is an astral character, not a problem
    lines.append(chat(99, user="emoji PAIR ok").replace("PAIR", "\\ud83d\\ude00"))
    if array:
        path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
        return [n + 1 for n in bad_lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bad_lines


@pytest.mark.parametrize("array", [False, True])
def test_huge_numbers_and_lone_surrogates_are_skipped_and_counted(
        workspace: Workspace, tmp_path: Path, array: bool) -> None:
    raw = tmp_path / ("raw.json" if array else "raw.jsonl")
    bad_lines = write_input(raw, array=array)
    result = ingest(workspace, raw, name="odd", on_error="skip")
    assert result.counts["skipped_lines"] == len(BAD)
    assert result.counts["records_read"] == 9 and result.counts["records_out"] == 9
    facts = result.findings["input"]
    assert facts["skipped_line_numbers"] == bad_lines
    reasons = " ".join(facts["skip_reasons"])
    assert "an integer longer than N digits" in reasons and "lone surrogate" in reasons
    assert "messages[N].content" in reasons  # the field is named
    records = list(read_dataset(workspace, "odd"))
    assert "emoji \U0001f600 ok" in records[-1].messages[0].content
    written = b"".join(p.read_bytes() for p in result.path.iterdir())
    assert CANARY.encode() not in written
    assert result.manifest["counts"]["skipped_lines"] == len(BAD)


@pytest.mark.parametrize(("index", "line"), [(0, 2), (2, 5)])
def test_fail_mode_names_the_file_and_the_line(workspace: Workspace, tmp_path: Path,
                                               index: int, line: int) -> None:
    raw = tmp_path / "raw.jsonl"
    lines = [chat(i) for i in range(5)]
    lines.insert(line - 1, BAD[index])
    raw.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        ingest(workspace, raw, name="odd")
    assert info.value.line == line
    message = info.value.diagnostics()
    assert f"{raw}:{line}" in message and CANARY not in message and "7777" not in message
    assert not (workspace.root / "datasets" / "odd").exists()


class _Fragile:
    """A recognizer that cannot handle one kind of text (as a plug-in might not)."""

    name = "fragile"
    entity_types = frozenset({"WORD"})

    def analyze(self, text: str) -> list[Entity]:
        if "boom" in text:
            raise ValueError("cannot handle this text")
        return [Entity("WORD", 0, 4, 0.9, self.name)] if text.startswith("word") else []


def _passes(path: Path, on_error: str) -> tuple[RecordPasses, Detections]:
    analyzer = Analyzer(recognizers=[_Fragile()])
    source = RecordPasses(path, format=None, text_field=None, on_error=on_error,
                          analyzer=analyzer, progress=None)
    found = Detections(analyzer, keep_fields=(), dataset_wide=True)
    source.on_first = found.add
    return source, found


class _FailsOn(Redactor):
    """A redactor that fails on one record id (the redaction step's failure, injected)."""

    def redact_record(self, record: Record, *args: object, **kwargs: object) -> RedactionOutcome:
        if record.id == "r3":
            raise OverflowError("injected")
        return super().redact_record(record, *args, **kwargs)  # type: ignore[arg-type]


def test_records_failing_detection_or_redaction_are_skipped_in_every_pass(
        tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text("\n".join([chat(0, "word one"), chat(1, "boom"), chat(2, "word two"),
                              chat(3, "word three"), chat(4)]) + "\n")
    source, found = _passes(raw, "skip")
    assert [r.id for r in source.records("first")] == ["r0", "r2", "r3", "r4"]
    assert [r.id for r in source.records("second")] == ["r0", "r2", "r3", "r4"]
    redactor = _FailsOn(default_policy(), keys=DatasetKeys.generate())
    out = [(r.id, line) for r, line in redaction_pass(source, found, redactor, PiiStats(),
                                                          phase="last")]
    assert [rid for rid, _ in out] == ["r0", "r2", "r4"]
    assert b"word" not in out[0][1] and b"[WORD]" not in out[0][1]  # pseudonymised
    facts = input_facts(source)
    assert facts["records"] == 3 and facts["skipped_lines"] == 2
    assert facts["skipped_line_numbers"] == [2, 4]
    assert facts["skip_reasons"] == {"detection failed (ValueError)": 1,
                                     "redaction failed (OverflowError)": 1}

    source, found = _passes(raw, "fail")
    with pytest.raises(DataFormatError, match=rf"{raw.name}:2: detection failed \(ValueError\)"):
        list(source.records("first"))


def test_scan_skips_and_counts_the_same_records(workspace: Workspace, tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    write_input(raw)
    data = scan(raw, on_error="skip", audit=workspace.audit).to_json()
    assert data["input"]["records"] == 9 and data["input"]["skipped_lines"] == len(BAD)
    event = next(e for e in workspace.ledger.entries() if e.action == "data.scan")
    assert event.details["skipped_lines"] == len(BAD) and event.details["records"] == 9
