"""Parsing fine-tuning files: each format, detection, streaming, malformed lines, skip mode."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from sealtune.data.formats import (
    FORMATS,
    DataFormatError,
    ReadStats,
    _source,
    detect_format,
    read_records,
    register_format,
)
from sealtune.data.records import Record
from sealtune.errors import UsageError

# A planted value: it must never appear in an error message.
PLANTED = "planted-13800138000-zhangwei"


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def roles(record: Record) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in record.messages]


def read_all(path: Path, **kwargs: Any) -> tuple[list[Record], ReadStats]:
    with read_records(path, **kwargs) as stream:
        records = list(stream)
    return records, stream.stats


# -- each format ------------------------------------------------------------------------


def test_alpaca_with_system_history_and_extras(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "a.jsonl", [
        {"instruction": "翻译", "input": "hello", "output": "你好", "system": "be brief",
         "history": [["q1", "a1"]], "category": "mt", "id": "r-1"},
        {"instruction": "Say hi", "input": "", "output": "hi"},
    ])
    assert detect_format(path) == "alpaca"
    records, stats = read_all(path)
    assert roles(records[0]) == [("system", "be brief"), ("user", "q1"), ("assistant", "a1"),
                                 ("user", "翻译\n\nhello"), ("assistant", "你好")]
    assert records[0].id == "r-1" and records[0].extra == {"category": "mt"}
    assert records[0].source_format == "alpaca" and records[0].line == 1
    assert roles(records[1]) == [("user", "Say hi"), ("assistant", "hi")]
    assert records[1].id == "1"  # the 0-based line number
    assert (stats.read, stats.skipped, stats.format) == (2, 0, "alpaca")


def test_alpaca_json_array_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    data = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data, indent=2).encode())
    assert detect_format(path) == "alpaca"
    records, _ = read_all(path)
    assert [r.id for r in records] == ["0", "1", "2"]
    assert roles(records[2]) == [("user", "q2"), ("assistant", "a2")]
    assert records[1].line == 6  # the line where element 1 starts


def test_sharegpt_variants(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "s.jsonl", [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
         "system": "sys"},
        {"conversation": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"conversations": [{"from": "system", "value": "s"}, {"from": "user", "value": "u"},
                           {"from": "ChatGPT", "value": "c"}]},
    ])
    assert detect_format(path) == "sharegpt"
    records, _ = read_all(path)
    assert roles(records[0]) == [("system", "sys"), ("user", "hi"), ("assistant", "yo")]
    assert roles(records[1]) == [("user", "a"), ("assistant", "b")]
    assert roles(records[2]) == [("system", "s"), ("user", "u"), ("assistant", "c")]


def test_openai_chat(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "o.jsonl", [
        {"id": 42, "messages": [{"role": "developer", "content": "d"},
                                {"role": "user", "content": [{"type": "text", "text": "a"},
                                                             {"type": "text", "text": "b"}]},
                                {"role": "assistant", "content": "c", "weight": 1}],
         "meta": {"k": 1}},
    ])
    assert detect_format(path) == "openai"
    (record,), _ = read_all(path)
    assert roles(record) == [("system", "d"), ("user", "ab"), ("assistant", "c")]
    assert record.id == "42" and record.extra == {"meta": {"k": 1}}


def test_sealed_line_format_reads_back_as_openai(tmp_path: Path) -> None:
    original = Record("x", 1, [], source_format="t")
    original.messages = roles_to([("user", "u"), ("assistant", "a")])
    path = jsonl(tmp_path / "sealed.jsonl", [original.to_json()])
    (record,), _ = read_all(path)
    assert record.id == "x" and roles(record) == [("user", "u"), ("assistant", "a")]


def roles_to(pairs: list[tuple[str, str]]) -> list[Any]:
    from sealtune.data.records import Message

    return [Message(r, c) for r, c in pairs]  # type: ignore[arg-type]


def test_plain_jsonl_defaults_and_named_fields(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "p.jsonl", [{"text": "t1", "lang": "zh"}, {"text": "t2"}])
    assert detect_format(path) == "jsonl"
    records, _ = read_all(path)
    assert roles(records[0]) == [("user", "t1")] and records[0].extra == {"lang": "zh"}

    pr = jsonl(tmp_path / "pr.jsonl", [{"prompt": "p", "completion": "c"}])
    (record,), _ = read_all(pr)
    assert roles(record) == [("user", "p"), ("assistant", "c")]

    named = jsonl(tmp_path / "n.jsonl", [{"body": "b", "reply": "r", "title": "t"}])
    (record,), _ = read_all(named, text_field="body")
    assert roles(record) == [("user", "b")] and record.extra == {"reply": "r", "title": "t"}
    (record,), _ = read_all(named, prompt_field="body", response_field="reply")
    assert roles(record) == [("user", "b"), ("assistant", "r")]
    (record,), _ = read_all(named, fields={"title": "system", "body": "user"})
    assert roles(record) == [("system", "t"), ("user", "b")]


def test_format_override(tmp_path: Path) -> None:
    """A file that looks like OpenAI chat can be read as plain JSONL on request."""
    path = jsonl(tmp_path / "o.jsonl", [{"messages": [{"role": "user", "content": "x"}],
                                         "note": "n"}])
    (record,), stats = read_all(path, format="jsonl", text_field="note")
    assert roles(record) == [("user", "n")] and stats.format == "jsonl"
    (record,), _ = read_all(path, text_field="note")  # field options imply jsonl
    assert record.source_format == "jsonl"


def test_csv_columns_alpaca_header_tsv_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbfid,question,answer,category\n"
                     b'1,"multi\nline question",an answer,billing\n\n2,q2,a2,\n')
    assert detect_format(path) == "csv"
    records, stats = read_all(path)
    assert [r.id for r in records] == ["1", "2"]
    assert roles(records[0]) == [("user", "multi\nline question"), ("assistant", "an answer")]
    assert records[0].extra == {"category": "billing"} and records[0].line == 2
    assert records[1].line == 5 and stats.blank == 1

    alpaca = tmp_path / "al.csv"
    alpaca.write_text("instruction,input,output\ndo,it,done\n", "utf-8")
    (record,), _ = read_all(alpaca)
    assert roles(record) == [("user", "do\n\nit"), ("assistant", "done")]
    assert record.source_format == "csv" and record.id == "0"

    tsv = tmp_path / "d.tsv"
    tsv.write_text("body\treply\nb, with comma\tr\n", "utf-8")
    (record,), _ = read_all(tsv, prompt_field="body", response_field="reply")
    assert roles(record) == [("user", "b, with comma"), ("assistant", "r")]

    semi = tmp_path / "semi.csv"
    semi.write_text("prompt;response\np;r\n", "utf-8")
    (record,), _ = read_all(semi)
    assert roles(record) == [("user", "p"), ("assistant", "r")]


def test_csv_without_usable_columns_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("foo,bar\n1,2\n", "utf-8")
    with pytest.raises(DataFormatError, match=r"x\.csv:2: no column maps to a chat role"):
        read_all(path)


# -- detection --------------------------------------------------------------------------


def test_detection_uses_the_majority_of_the_first_records(tmp_path: Path) -> None:
    rows: list[Any] = [{"instruction": "i", "output": "o"}] * 5 + [{"text": "t"}] * 2
    path = jsonl(tmp_path / "mix.jsonl", rows)
    path.write_text("\n\n{broken\n[1]\n" + path.read_text())
    assert detect_format(path) == "alpaca"


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "empty file"),
    (b"hello,world\n", "not JSON lines, a JSON array or a .csv file"),
    (b'{"foo": 1}\n{"bar": 2}\n', "cannot detect the format from the first 2 records"),
])
def test_undetectable_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "u.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=problem) as info:
        detect_format(path)
    assert "--format" in (info.value.hint or "")


def test_usage_errors(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "o.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(UsageError, match="unknown format 'yaml'"):
        read_records(path, format="yaml")
    with pytest.raises(UsageError, match="do not apply to the openai format"):
        read_records(path, format="openai", text_field="x")
    with pytest.raises(UsageError, match="give one of"):
        read_records(path, text_field="a", prompt_field="b")
    with pytest.raises(UsageError, match="role 'bot'"):
        read_records(path, fields={"a": "bot"})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="on_error"):
        read_records(path, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(DataFormatError, match=r"missing\.jsonl: file not found"):
        read_records(tmp_path / "missing.jsonl")


def test_registry_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_format(FORMATS["alpaca"])
    assert set(FORMATS) == {"alpaca", "csv", "jsonl", "openai", "sharegpt"}


# -- streaming --------------------------------------------------------------------------


def _big_rows(count: int) -> list[Any]:
    pad = "字" * 200
    return [{"instruction": f"q{i} {pad}", "output": f"a{i}"} for i in range(count)]


def test_streams_a_file_bigger_than_a_chunk_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    count = 12_000
    with path.open("w", encoding="utf-8") as fh:
        for row in _big_rows(count):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    size = path.stat().st_size
    assert size > 6 * _source.CHUNK_BYTES
    tracemalloc.start()
    try:
        seen = 0
        with read_records(path) as stream:
            for record in stream:
                seen += 1
                last = record
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count and last.id == str(count - 1)
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte file"


def test_json_array_elements_span_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_source, "CHUNK_BYTES", 97)  # every element crosses a chunk boundary
    path = tmp_path / "arr.json"
    rows = _big_rows(40)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), "utf-8")
    records, _ = read_all(path)
    assert [r.messages[1].content for r in records] == [f"a{i}" for i in range(40)]
    assert records[3].line == 1 + 3 * 4 + 1  # "[" then 4 lines per element (indent=1)


def test_json_array_syntax_error_is_fatal_even_in_skip_mode(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": "' + PLANTED
                    + '" "output": 1}\n]', "utf-8")
    with pytest.raises(DataFormatError, match=r"bad\.json:3: invalid JSON") as info:
        read_all(path, format="alpaca", on_error="skip")
    assert PLANTED not in info.value.diagnostics()


# -- malformed lines ----------------------------------------------------------------------


BAD_LINES = [
    ('{"instruction": "' + PLANTED + '", "output": ', None, "invalid JSON at column"),
    ('["' + PLANTED + '"]', None, "expected a JSON object"),
    ('{"instruction": "' + PLANTED + '"}', "output", "missing"),
    ('{"instruction": "' + PLANTED + '", "output": 7}', "output", "expected a string, "
     "found a number"),
    ('{"instruction": "i", "output": "o", "history": [["' + PLANTED + '"]]}', "history[0]",
     "expected a [question, answer] pair"),
]


@pytest.mark.parametrize(("line", "field", "problem"), BAD_LINES)
def test_malformed_line_names_file_line_and_field_not_content(
        tmp_path: Path, line: str, field: str | None, problem: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"instruction": "ok", "output": "ok"}\n\n' + line + "\n", "utf-8")
    with pytest.raises(DataFormatError) as info:
        read_all(path, format="alpaca")
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    assert problem in err.problem
    text = err.diagnostics()
    assert f"{path}:3: " in text and PLANTED not in text and PLANTED not in repr(err.args)


@pytest.mark.parametrize(("row", "field"), [
    ({"messages": [{"role": "tool", "content": PLANTED}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "url": PLANTED}]}]},
     "messages[0].content[0].type"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "id": [PLANTED]}, "id"),
])
def test_openai_field_errors(tmp_path: Path, row: Any, field: str) -> None:
    path = jsonl(tmp_path / "o.jsonl", [row])
    with pytest.raises(DataFormatError) as info:
        read_all(path, format="openai")
    assert info.value.field == field and PLANTED not in info.value.diagnostics()


def test_sharegpt_unknown_speaker(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "observation",
                                                           "value": PLANTED}]}])
    with pytest.raises(DataFormatError, match=r"s\.jsonl:1: conversations\[0\]\.from: "
                                              r"unsupported speaker"):
        read_all(path, format="sharegpt")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe' + PLANTED.encode() + b'"}\n')
    with pytest.raises(DataFormatError, match=r"u\.jsonl:2: invalid UTF-8 at byte 11") as info:
        read_all(path)
    assert PLANTED not in info.value.diagnostics()
    records, stats = read_all(path, on_error="skip")
    assert len(records) == 1 and stats.skipped_lines == [2]


def test_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(f"prompt,response\na,b\n{PLANTED},x,extra\n", "utf-8")
    with pytest.raises(DataFormatError, match=r"c\.csv:3: row has 3 cells, the header has 2") \
            as info:
        read_all(path)
    assert PLANTED not in info.value.diagnostics()
    records, stats = read_all(path, on_error="skip")
    assert len(records) == 1 and stats.skipped == 1

    dup = tmp_path / "dup.csv"
    dup.write_text("prompt,prompt\na,b\n", "utf-8")
    with pytest.raises(DataFormatError, match=r"dup\.csv:1: duplicate column names"):
        read_all(dup, on_error="skip")


def test_overlong_line_is_skipped_without_losing_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_source, "MAX_LINE_BYTES", 64)
    path = jsonl(tmp_path / "l.jsonl", [{"text": "x" * 500}, {"text": "short"}])
    with pytest.raises(DataFormatError, match=r"l\.jsonl:1: line longer than 64 bytes"):
        read_all(path)
    records, stats = read_all(path, on_error="skip")
    assert [r.id for r in records] == ["1"] and stats.skipped_lines == [1]


def test_skip_mode_counts_and_reasons(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = ['{"instruction": "a", "output": "b"}', "{broken", "", '{"instruction": "c"}',
             '{"instruction": "d", "output": "e"}', '{"instruction": "f"}', "[1]"]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    records, stats = read_all(path, format="alpaca", on_error="skip")
    assert [r.id for r in records] == ["0", "4"]
    assert (stats.read, stats.skipped, stats.blank) == (2, 4, 1)
    assert stats.skipped_lines == [2, 4, 6, 7]
    assert stats.skip_reasons["output: missing"] == 2
    assert sum(stats.skip_reasons.values()) == 4
