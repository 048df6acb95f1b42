"""The ``sealtune pii detect`` contract, through Typer's CliRunner and a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sealtune.cli.pii import app
from sealtune.errors import ConfigError, SealtuneError, UsageError

PLANTED = "planted-13800138000"


def run(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), "utf-8")
    return path


def test_contract_one_line_per_input_line(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", [
        json.dumps({"id": "a-1", "text": "手机１３８ ００１３ ８０００，邮箱a@example.com"},
                   ensure_ascii=False),
        json.dumps({"text": "nothing here"}),
        json.dumps({"id": 7, "body": "x", "text": "卡号 4111 1111 1111 1111"}),
    ])
    out = tmp_path / "out" / "found.jsonl"
    code, _, exc = run("detect", str(src), "--text-field", "text", "--out", str(out))
    assert code == 0, exc
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a-1", 1, 7]
    assert rows[0]["entities"] == [
        {"type": "PHONE", "start": 2, "end": 15, "score": 0.9},
        {"type": "EMAIL", "start": 18, "end": 31, "score": 0.9},
    ]
    assert rows[1]["entities"] == []
    assert [(e["type"], e["start"], e["end"]) for e in rows[2]["entities"]] == [
        ("BANK_CARD", 3, 22)]
    assert set(rows[2]["entities"][0]) == {"type", "start", "end", "score"}


def test_other_text_field_and_type_filter(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", [json.dumps({"body": "a@example.com 13800138000"})])
    out = tmp_path / "out.jsonl"
    code, _, exc = run("detect", str(src), "--text-field", "body", "--types", "EMAIL",
                       "--out", str(out))
    assert code == 0, exc
    assert [e["type"] for e in json.loads(out.read_text())["entities"]] == ["EMAIL"]


@pytest.mark.parametrize(("line", "message"), [
    ("not json " + PLANTED, "line 2: not valid JSON"),
    (json.dumps([PLANTED]), "line 2: not a JSON object"),
    (json.dumps({"other": PLANTED}), "line 2: no field 'text'"),
    (json.dumps({"text": [PLANTED]}), "line 2: field 'text' is list"),
])
def test_malformed_line_names_file_and_line_never_the_text(tmp_path: Path, line: str,
                                                           message: str) -> None:
    src = write(tmp_path / "in.jsonl", [json.dumps({"text": "ok"}), line])
    out = tmp_path / "out.jsonl"
    code, output, exc = run("detect", str(src), "--out", str(out))
    assert code != 0 and isinstance(exc, SealtuneError)
    assert message in str(exc) and str(src) in str(exc)
    assert PLANTED not in str(exc) + (exc.hint or "") + output
    assert not out.exists() and list(tmp_path.iterdir()) == [src]  # no partial output


def test_usage_and_policy_errors(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", [json.dumps({"text": "x"})])
    out = str(tmp_path / "o.jsonl")
    assert isinstance(run("detect", str(tmp_path / "missing.jsonl"), "--out", out)[2], UsageError)
    assert isinstance(run("detect", str(src), "--out", out, "--types", "NOPE")[2], UsageError)
    assert isinstance(run("detect", str(src), "--out", out, "--policy",
                          str(tmp_path / "none.toml"))[2], ConfigError)
    bad = tmp_path / "bad.toml"
    bad.write_text("[pii]\nrecognizers = [{ name = 'x', type = 'X_ID', pattern = '(' }]\n")
    exc = run("detect", str(src), "--out", out, "--policy", str(bad))[2]
    assert isinstance(exc, ConfigError) and "pattern" in str(exc)


def test_policy_adds_custom_recognizer(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[pii]\n"
        "[[pii.recognizers]]\n"
        "name = 'employee_id'\ntype = 'EMPLOYEE_ID'\npattern = 'EMP-\\d{6}'\ncontext = ['工号']\n",
        "utf-8")
    src = write(tmp_path / "in.jsonl", [json.dumps({"text": "工号EMP-123456"}, ensure_ascii=False)])
    out = tmp_path / "out.jsonl"
    code, _, exc = run("detect", str(src), "--out", str(out), "--policy", str(policy))
    assert code == 0, exc
    assert json.loads(out.read_text())["entities"] == [
        {"type": "EMPLOYEE_ID", "start": 2, "end": 12, "score": 0.9}]


def test_subprocess_entry_point(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", [json.dumps({"id": "z", "text": "IP 10.0.0.1"})])
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", "from sealtune.cli.pii import app; app()", "detect", str(src),
         "--text-field", "text", "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == {
        "id": "z", "entities": [{"type": "IP_ADDRESS", "start": 3, "end": 11, "score": 0.85}]}
