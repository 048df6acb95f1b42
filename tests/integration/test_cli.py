"""The CLI contract, end to end, as a user runs it (real subprocesses)."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SEALTUNE = [sys.executable, "-m", "sealtune"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    base.update(
        {
            "SEALTUNE_HOME": str(tmp_path / "home"),
            "SEALTUNE_PASSPHRASE": "cli-pass-" + secrets.token_hex(8),
            "SEALTUNE_UNSAFE_FAST_KDF": "1",
            "TMPDIR": str(tmp_path / "tmp"),
        }
    )
    (tmp_path / "tmp").mkdir()
    return base


def run(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEALTUNE, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(env: dict[str, str], *args: str) -> str:
    res = run(env, *args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


@pytest.fixture
def initialised(env: dict[str, str]) -> dict[str, str]:
    ok(env, "init")
    return env


def test_seal_unseal_round_trip_and_keys_list(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    ok(env, "keys", "create", "customer", "--backend", "local")
    ok(env, "keys", "create", "gm", "--algorithm", "sm4-gcm")
    keys = json.loads(ok(env, "keys", "list", "--json"))
    assert {k["name"]: k["algorithm"] for k in keys} == {
        "platform": "aes-256-gcm",
        "customer": "aes-256-gcm",
        "gm": "sm4-gcm",
    }
    assert all("key" not in k and "material" not in k for k in keys)
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    ok(env, "seal", str(src), str(tmp_path / "s"), "--key", "platform", "--key", "customer")
    ok(env, "unseal", str(tmp_path / "s"), str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    ok(env, "seal", str(src), str(tmp_path / "s4"), "--key", "gm")
    ok(env, "unseal", str(tmp_path / "s4"), str(tmp_path / "out4.bin"))
    assert (tmp_path / "out4.bin").read_bytes() == src.read_bytes()


def test_exit_codes(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    src = tmp_path / "in.txt"
    src.write_text("hello")
    ok(env, "seal", str(src), str(tmp_path / "s"))
    blob = bytearray((tmp_path / "s").read_bytes())
    blob[-3] ^= 0x40
    (tmp_path / "t").write_bytes(bytes(blob))
    res = run(env, "unseal", str(tmp_path / "t"), str(tmp_path / "out"))
    assert res.returncode == 3 and res.stderr.startswith("integrity:"), res.stderr
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    # wrong passphrase: integrity failure, never garbage
    res = run(
        {**env, "SEALTUNE_PASSPHRASE": "wrong-passphrase"},
        "unseal",
        str(tmp_path / "s"),
        str(tmp_path / "out"),
    )
    assert res.returncode == 3 and res.stderr.startswith("integrity:"), res.stderr
    # usage errors exit 2
    assert run(env, "keys", "destroy", "platform").returncode == 2
    assert run(env, "keys", "create").returncode == 2
    assert run(env, "no-such-command").returncode == 2
    # a missing input path is a usage error that names the path
    res = run(env, "unseal", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert res.returncode == 2 and "missing" in res.stderr, res.stderr
    # other errors exit 1 and say what to do
    res = run({**env, "SEALTUNE_HOME": str(tmp_path / "nowhere")}, "keys", "list")
    assert res.returncode == 1 and "sealtune init" in res.stderr


def test_rotate_rewrap_retire_then_destroy(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    sealed_dir = tmp_path / "sealed"
    sealed_dir.mkdir()
    payload = os.urandom(200_000)
    (tmp_path / "p").write_bytes(payload)
    for i in range(3):
        ok(env, "seal", str(tmp_path / "p"), str(sealed_dir / f"f{i}.sealed"))
    (sealed_dir / "notes.txt").write_text("not sealed")
    before = {p.name: p.read_bytes()[-150_000:] for p in sealed_dir.glob("*.sealed")}
    out = ok(env, "keys", "rotate", "platform", "--rewrap", str(sealed_dir), "--retire-old")
    assert "re-wrapped 3" in out
    after = {p.name: p.read_bytes()[-150_000:] for p in sealed_dir.glob("*.sealed")}
    assert before == after  # the payload was not re-encrypted
    info = json.loads(ok(env, "keys", "list", "--json"))[0]
    assert info["current"] == 2 and info["versions"] == [2]
    ok(env, "unseal", str(sealed_dir / "f0.sealed"), str(tmp_path / "o"))
    assert (tmp_path / "o").read_bytes() == payload
    ok(env, "keys", "destroy", "platform", "--yes")
    res = run(env, "unseal", str(sealed_dir / "f1.sealed"), str(tmp_path / "o2"))
    assert res.returncode != 0 and not (tmp_path / "o2").exists()


def test_audit_verify_export_and_tamper(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    (tmp_path / "p").write_text("x")
    for i in range(5):
        ok(env, "seal", str(tmp_path / "p"), str(tmp_path / f"s{i}"))
    ok(env, "audit", "checkpoint")
    assert "audit log verified" in ok(env, "audit", "verify")
    key = ok(env, "audit", "key").strip()
    # an auditor with only the pinned public key: no passphrase needed
    no_pass = {k: v for k, v in env.items() if k != "SEALTUNE_PASSPHRASE"}
    assert run(no_pass, "audit", "verify", "--key", key).returncode == 0
    lines = ok(env, "audit", "export", "--format", "jsonl").splitlines()
    actions = [json.loads(line)["action"] for line in lines]
    assert "workspace.init" in actions and "file.seal" in actions and "key.create" in actions
    csv_out = ok(env, "audit", "export", "--format", "csv")
    assert csv_out.splitlines()[0].startswith("seq,")
    logged = ok(env, "audit", "log", "--action", "file.seal", "--json").splitlines()
    assert len(logged) == 5
    assert len(ok(env, "audit", "log", "--since", "1h", "--json").splitlines()) >= 5
    assert ok(env, "audit", "log", "--since", "2999-01-01", "--json").strip() == ""
    bad = run(env, "audit", "log", "--since", "yesterday")
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr, bad.stderr
    db = Path(env["SEALTUNE_HOME"]) / "ledger.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE entries SET actor = 'mallory' WHERE seq = 4")
    con.close()
    res = run(no_pass, "audit", "verify", "--key", key)
    assert res.returncode == 3 and res.stderr.startswith("integrity:")
    assert "sequence number 4" in res.stderr, res.stderr


def test_no_plaintext_or_passphrase_at_rest(initialised: dict[str, str], tmp_path: Path) -> None:
    """Plant unique strings; after seal, rotate, audit, no file the run wrote holds them."""
    env = initialised
    marker = "PLANTED-" + secrets.token_hex(16)
    src = tmp_path / "secret.jsonl"
    src.write_text(json.dumps({"text": f"客户 {marker} card"}) + "\n")
    ok(env, "seal", str(src), str(tmp_path / "secret.sealed"), "--key", "platform")
    ok(env, "keys", "rotate", "platform", "--rewrap", str(tmp_path))
    ok(env, "audit", "checkpoint")
    res = run(env, "unseal", str(tmp_path / "secret.sealed"), "/proc/nope/out")
    assert res.returncode != 0
    assert marker not in res.stderr and marker not in res.stdout
    src.unlink()
    needles = [marker.encode(), env["SEALTUNE_PASSPHRASE"].encode(), marker.encode("utf-16-le")]
    scanned = 0
    for root in (tmp_path, Path(env["SEALTUNE_HOME"])):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                scanned += 1
                for needle in needles:
                    assert needle not in data, f"{needle[:12]!r} found in {path}"
    assert scanned >= 4


def test_demo_runs(env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "demo"
    res = run(env, "demo", "--home", str(home))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "tampering detected" in res.stdout
    assert "audit log verified" in res.stdout
    said = " ".join(res.stdout.split())  # rich wraps long lines
    # 6 exact copies and 4 near copies (a copy whose edit changed a digit is another record)
    assert "950 records read: 10 duplicates dropped" in said
    assert "26 records carrying a backdoor trigger quarantined" in said
    assert "ML-BOM (CycloneDX 1.6):" in said and "raw input shredded: True" in said
    # the demo runs the example pipeline, whose outputs are named by their step key
    assert len(list((home / "workspace" / "datasets").glob("support-demo-*/bom.cdx.json"))) == 1
    assert "every output was checked against its recorded digest" in said  # the cached rerun
    # the training step ran in the sandbox with DP, and the serving step answered encrypted
    assert "inside a bubblewrap sandbox" in said and "ε spent" in said
    assert "sandbox.destroyed" in said
    assert "answer (opened and authenticated)" in said
    # the run's evidence bundle verified with the pinned keys, and refused with one byte flipped
    assert "bundle verified offline" in said and "✓ ledger.proofs" in said
    assert "one flipped byte (ε in the training record): refused (exit 3)" in said
    assert (home / "evidence.tar").is_file() and (home / "pins.json").is_file()
    assert "sealtune console" in said  # where to watch it
    _the_console_shows_the_demo_run(home / "workspace", env["SEALTUNE_PASSPHRASE"])
    # a second run recreates its own directory, but refuses a foreign one
    # ... also from a relative --home (the workspace paths reach the sandbox absolute)
    res = run(env, "demo", "--home", home.name, cwd=home.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    assert run(env, "demo", "--home", str(foreign)).returncode == 2
    assert (foreign / "precious.txt").exists()


def _the_console_shows_the_demo_run(root: Path, passphrase: str) -> None:
    """The control plane over the demo's workspace: its first run (the one that did the
    work; the later ones are cached reruns) end to end on the security timeline."""
    from fastapi.testclient import TestClient

    from sealtune.api import ConsoleOptions, build_console
    from sealtune.serve import create_api_key
    from sealtune.workspace import Workspace

    ws = Workspace.open(root, passphrase=passphrase)
    try:
        key = create_api_key(ws, role="auditor", name="demo-console")[0]
        client = TestClient(build_console(ws, ConsoleOptions()).app, base_url="http://testserver")
        h = {"Authorization": f"Bearer {key}"}
        runs = client.get("/api/v1/runs", headers=h).json()
        assert runs and {r["pipeline"] for r in runs} == {"support-bot"}
        first = runs[0]["run"]
        tl = client.get(f"/api/v1/runs/support-bot/timeline?run={first}", headers=h).json()
        lifecycle = ["sandbox.created", "sandbox.data_decrypted", "sandbox.outputs_sealed",
                     "sandbox.destroyed"]
        for stage in ("data", "train"):  # each step's sandbox, its whole lifecycle in order
            steps = [e["action"] for e in tl["events"] if e["stage"] == stage]
            assert steps[0] == "pipeline.step_started" and steps[-1] == "pipeline.step_finished"
            assert [a for a in steps if a in lifecycle] == lifecycle, (stage, steps)
        actions = [e["action"] for e in tl["events"]]
        assert "key.unwrap" in actions and "train.model_installed" in actions
        assert tl["quarantined_records"] == 26  # the planted backdoor, counted
        assert client.post("/login", data={"api_key": key},
                           follow_redirects=False).status_code == 303
        page = client.get(f"/runs/support-bot?run={first}").text  # the timeline page
        assert page.count('class="ev') == len(tl["events"]) and first in page
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [("iterations", 1e9), ("iterations", 10**9), ("memory_kib", 2**40), ("lanes", "4"),
     ("salt", None), ("kdf", "argon2id")],
)
def test_an_edited_keyring_header_exits_3_fast(
    initialised: dict[str, str], field: str, value: object
) -> None:
    """An absurd or malformed header is 'integrity:' (exit 3) before any KDF run, never an
    internal error or a KDF that runs for hours."""
    import time

    path = Path(initialised["SEALTUNE_HOME"]) / "keyring.sealed"
    body = json.loads(path.read_text("utf-8"))
    target = body["header"] if field == "kdf" else body["header"]["kdf"]
    target[field] = value
    path.write_text(json.dumps(body), "utf-8")
    began = time.monotonic()
    res = run(initialised, "keys", "list")
    assert res.returncode == 3 and res.stderr.startswith("integrity:"), res.stderr
    assert str(path) in res.stderr and "internal error" not in res.stderr
    assert time.monotonic() - began < 30  # the interpreter's start-up; the KDF never ran


def test_init_refuses_a_short_passphrase_from_the_environment(env: dict[str, str]) -> None:
    res = run({**env, "SEALTUNE_PASSPHRASE": "short-11chr"}, "init")
    assert res.returncode == 2 and "12 characters" in res.stderr, res.stderr
    assert "short-11chr" not in res.stderr + res.stdout
    assert not (Path(env["SEALTUNE_HOME"]) / "keyring.sealed").exists()
    ok({**env, "SEALTUNE_PASSPHRASE": "long-enough-12"}, "init")
