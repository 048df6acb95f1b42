"""The ``sealtune data`` CLI contract, end to end (real subprocesses, a real workspace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import cli_env, ok, run

ROWS = [
    ("你好，我是欧阳震霆，手机13912345678，退款什么时候到账？", "退款将在3个工作日内到账。"),
    ("Hi, this is Quentin Rasmussen, email q.rasmussen@example.org. Where is my order?",
     "Your order ships tomorrow."),
    ("我的银行卡6228480402564890018被冻结了", "请携带身份证到网点办理解冻。"),
    ("How do I reset my password?", "Tap Forgot password on the login page."),
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)



@pytest.fixture
def raw(tmp_path: Path) -> Path:
    path = tmp_path / "raw.jsonl"
    rows = [*ROWS, ROWS[3]]  # one exact duplicate
    lines = [json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": u},
                                                     {"role": "assistant", "content": a}]},
                        ensure_ascii=False) for i, (u, a) in enumerate(rows)]
    lines.insert(2, "{not json")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_scan_ingest_list_show_export(env: dict[str, str], raw: Path, tmp_path: Path) -> None:
    ok(env, "init")
    res = run(env, "data", "scan", str(raw), "--on-error", "skip", "--json")
    assert res.returncode == 0, res.stderr
    assert "default policy" in res.stderr
    report = json.loads(res.stdout)
    assert report["input"]["records"] == 5 and report["input"]["skipped_lines"] == 1
    assert report["pii"]["entities"]["PHONE"] == 1
    assert report["screening"]["counts"]["exact_duplicate"] == {"drop": 1}
    assert run(env, "data", "scan", str(raw)).returncode == 1  # fail mode: the bad line

    res = run(env, "data", "ingest", str(raw), "--name", "support", "--on-error", "skip")
    assert res.returncode == 0, res.stderr
    assert "records/s" in res.stderr or "redacting and sealing" in res.stderr
    assert "records out" in res.stdout and "bom.cdx.json" in res.stdout
    assert raw.exists()

    listed = json.loads(ok(env, "data", "list", "--json"))
    assert [(d["name"], d["counts"]["records_out"]) for d in listed] == [("support", 4)]
    shown = json.loads(ok(env, "data", "show", "support", "--json"))
    assert all(shown["intact"].values()) and len(shown["intact"]) == 3
    assert shown["manifest"]["counts"]["skipped_lines"] == 1
    assert "support" in ok(env, "data", "show", "support")

    bom = json.loads(ok(env, "data", "export-bom", "support"))
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    ok(env, "data", "export-bom", "support", "--out", str(tmp_path / "bom.json"))
    assert json.loads((tmp_path / "bom.json").read_text()) == bom

    again = run(env, "data", "ingest", str(raw), "--name", "support", "--on-error", "skip")
    assert again.returncode == 2 and "already exists" in again.stderr
    missing = run(env, "data", "show", "nope")
    assert missing.returncode == 2


def test_policy_init_then_ingest_with_it(env: dict[str, str], raw: Path, tmp_path: Path) -> None:
    ok(env, "init")
    policy = tmp_path / "policy.yaml"
    ok(env, "data", "policy", "init", str(policy))
    text = policy.read_text()
    assert text.startswith("# sealtune data policy") and "redaction:" in text
    assert run(env, "data", "policy", "init", str(policy)).returncode == 2  # no overwrite
    ok(env, "data", "policy", "init", str(policy), "--force")
    policy.write_text(text.replace("on_error: fail", "on_error: skip")
                      .replace("  PHONE: {operator: pseudonym}", "  PHONE: {operator: tag}"))
    res = run(env, "data", "ingest", str(raw), "--name", "custom", "--policy", str(policy))
    assert res.returncode == 0, res.stderr
    assert "default policy" not in res.stderr
    shown = json.loads(ok(env, "data", "show", "custom", "--json"))["manifest"]
    assert shown["policy"]["source"] == str(policy)
    assert shown["counts"]["skipped_lines"] == 1


def test_bad_policy_names_file_and_yaml_path(env: dict[str, str], raw: Path,
                                             tmp_path: Path) -> None:
    ok(env, "init")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nredaction:\n  PHONE: {operator: maskk}\n")
    for command in ("scan", "ingest"):
        extra = ["--name", "x"] if command == "ingest" else []
        res = run(env, "data", command, str(raw), "--policy", str(bad), *extra)
        assert res.returncode == 1
        assert str(bad) in res.stderr and "redaction.PHONE.operator" in res.stderr
        assert "maskk" in res.stderr
    assert not (Path(env["SEALTUNE_HOME"]) / "datasets" / "x").exists()


def test_tampered_dataset_shows_exit_3(env: dict[str, str], raw: Path) -> None:
    ok(env, "init")
    ok(env, "data", "ingest", str(raw), "--name", "t", "--on-error", "skip")
    sealed = Path(env["SEALTUNE_HOME"]) / "datasets" / "t" / "data.jsonl.sealed"
    blob = bytearray(sealed.read_bytes())
    blob[-20] ^= 1
    sealed.write_bytes(bytes(blob))
    res = run(env, "data", "show", "t")
    assert res.returncode == 3 and "data.jsonl.sealed" in res.stderr


def test_sealed_input_odd_records_export_and_unsafe_policy(env: dict[str, str], raw: Path,
                                                           tmp_path: Path) -> None:
    """The seams a reviewer uses: seal the raw file, scan and ingest it sealed (odd records
    skipped and counted), export the redacted records, with every step in the audit log."""
    ok(env, "init")
    odd = raw.read_text("utf-8") + '{"id": "big", "n": ' + "7" * 5000 + ', "messages": []}\n' + \
        '{"id": "s", "messages": [{"role": "user", "content": "Quentin \\ud800"}]}\n'
    raw.write_text(odd, "utf-8")
    sealed = tmp_path / "raw.jsonl.sealed"
    ok(env, "seal", str(raw), str(sealed))
    raw.unlink()
    report = json.loads(ok(env, "data", "scan", str(sealed), "--on-error", "skip", "--json"))
    assert report["input"]["records"] == 5 and report["input"]["skipped_lines"] == 3
    failed = run(env, "data", "ingest", str(sealed), "--name", "strict")
    assert failed.returncode == 1 and f"{sealed}:3:" in failed.stderr  # the malformed line
    res = run(env, "data", "ingest", str(sealed), "--name", "support", "--on-error", "skip")
    assert res.returncode == 0, res.stderr
    assert "redacted record wide" in res.stdout
    shown = json.loads(ok(env, "data", "show", "support", "--json"))["manifest"]
    assert shown["counts"]["skipped_lines"] == 3 and shown["counts"]["records_out"] == 4
    assert shown["counts"]["redacted_record_wide"] >= 0

    out = tmp_path / "review.jsonl"
    res = run(env, "data", "export", "support", str(out))
    assert res.returncode == 0 and "plaintext" in res.stderr, res.stderr
    exported = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(exported) == 4 and {r["id"] for r in exported} >= {"c0", "c1"}
    text = out.read_text("utf-8")
    assert "欧阳震霆" not in text and "Quentin Rasmussen" not in text
    assert "13912345678" not in text and "6228480402564890018" not in text
    piped = run(env, "data", "export", "support", "-")  # a pipe, not a terminal
    assert piped.returncode == 0 and piped.stdout == out.read_text("utf-8")
    held = run(env, "data", "export", "support", "-", "--quarantine")
    assert held.returncode == 0 and held.stdout == ""  # nothing quarantined here
    assert run(env, "data", "export", "nope", str(tmp_path / "x")).returncode == 2

    policy = tmp_path / "weak.yaml"
    policy.write_text("version: 1\non_error: skip\nunsafe_no_dataset_wide_redaction: true\n")
    weak = run(env, "data", "ingest", str(sealed), "--name", "weak", "--policy", str(policy))
    assert weak.returncode == 0 and "WARNING" in weak.stderr
    assert "UserWarning" not in weak.stderr  # shown once, by the CLI

    log = ok(env, "audit", "log", "--json")
    events = [json.loads(line) for line in log.splitlines() if line.strip()]
    actions = [e["action"] for e in events]
    assert actions.count("data.export") == 3 and actions.count("data.read") >= 3
    ingests = [e for e in events if e["action"] == "data.ingest" and e["outcome"] == "success"]
    assert [e["details"].get("unsafe") for e in ingests] == [
        None, ["unsafe_no_dataset_wide_redaction"]]
    assert "欧阳震霆" not in log and "Quentin" not in log
