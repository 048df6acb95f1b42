"""The model registry end to end, through the CLI as a user runs it (real subprocesses).

One module fixture trains a tiny LoRA adapter in the sandbox and registers
it twice (``bot@v1``, ``bot@v2``); each test works on its own copy of that
workspace. Every stored part is then mutated in turn and must be caught.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SEALTUNE = [sys.executable, "-m", "sealtune"]
MODEL_SIGNING = [sys.executable, "-m", "model_signing"]


@dataclass
class Ctx:
    env: dict[str, str]
    home: Path
    tmp: Path

    def run(self, *args: str, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SEALTUNE, *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=300, check=False)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        res = self.run(*args, env=env)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout


def _env(root: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(home), "SEALTUNE_UNSAFE_FAST_KDF": "1",
                "SEALTUNE_PASSPHRASE": "pp-registry-tests-1", "TMPDIR": str(root / "tmp"),
                "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "200"})
    (root / "tmp").mkdir(exist_ok=True)
    return env


def _records(path: Path, n: int = 16) -> Path:
    path.write_text("".join(json.dumps({"instruction": f"How do I reset router {i}?",
                                        "input": "", "output": f"Hold the button {i} s."})
                            + "\n" for i in range(n)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    """init -> ingest -> train (sandboxed) -> register bot@v1 and bot@v2."""
    root = tmp_path_factory.mktemp("registry")
    ctx = Ctx(_env(root, root / "home"), root / "home", root)
    ctx.ok("init")
    ctx.ok("models", "make-tiny", str(root / "base"))
    ctx.ok("data", "ingest", str(_records(root / "support.jsonl")), "--name", "support",
           "--format", "alpaca")
    ctx.ok("train", "--dataset", "support", "--base", str(root / "base"), "--out-name", "bot",
           "--max-steps", "2", "--batch-size", "4", "--max-length", "48", "--threads", "1")
    job = json.loads(ctx.ok("jobs", "list", "--json"))[-1]["id"]
    assert ctx.ok("models", "register", "bot", "--from-job", job).strip() == "bot@v1"
    assert ctx.ok("models", "register", "bot", "--from-job", job).strip() == "bot@v2"
    ctx.env["JOB"] = job
    return ctx


@pytest.fixture
def ctx(trained: Ctx, tmp_path: Path) -> Iterator[Ctx]:
    home = tmp_path / "home"
    shutil.copytree(trained.home, home, symlinks=True)
    yield Ctx({**_env(tmp_path, home), "JOB": trained.env["JOB"]}, home, tmp_path)


def _blobs(ctx: Ctx, ref: str) -> dict[str, Path]:
    shown = json.loads(ctx.ok("models", "show", ref, "--json"))
    blobs = ctx.home / "registry" / "blobs"
    return {name: blobs.joinpath(*f["blob"].split(":"))
            for name, f in shown["record"]["files"].items()}


def _flip(path: Path, at: int = -40) -> None:
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


def test_versions_are_listed_shown_and_carry_their_provenance(ctx: Ctx) -> None:
    rows = json.loads(ctx.ok("models", "list", "--json"))
    assert [r["ref"] for r in rows] == ["bot@v1", "bot@v2"]
    assert rows[0]["model_digest"] == rows[1]["model_digest"]  # same job, same model
    out = ctx.tmp / "export"
    ctx.ok("models", "export", "bot@v1", str(out))
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["job"] == ctx.env["JOB"]
    assert prov["dataset"]["name"] == "support"
    assert prov["dataset"]["ml_bom"].startswith("sha256:")
    assert prov["sandbox_measurement"] and prov["training_config"]["max_steps"] == 2
    assert prov["model_digest"] == rows[0]["model_digest"]
    assert "epsilon" in prov and "gate_report" in prov
    assert "verified" in ctx.ok("models", "verify", "bot@v2")
    history = ctx.ok("models", "history", "bot")
    assert history.count("registry.register") == 2


def test_stock_model_signing_verifies_an_export_offline_and_catches_an_edit(ctx: Ctx) -> None:
    out, pub = ctx.tmp / "export", ctx.tmp / "registry.pub"
    ctx.ok("models", "export", "bot@v1", str(out))
    ctx.ok("models", "signer", "--out", str(pub))
    verify = [*MODEL_SIGNING, "verify", "key", str(out), "--signature", str(out / "model.sig"),
              "--public_key", str(pub)]
    res = subprocess.run(verify, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    _flip(out / "adapter_model.safetensors")
    res = subprocess.run(verify, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0
    _flip(out / "adapter_model.safetensors")  # back as it was: an added file is caught too
    (out / "extra.txt").write_text("x")
    res = subprocess.run(verify, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0


def test_a_flipped_byte_in_any_stored_file_is_caught_naming_it(ctx: Ctx) -> None:
    blobs = _blobs(ctx, "bot@v1")
    assert {"adapter_model.safetensors", "adapter_config.json", "provenance.json",
            "model.json"} <= set(blobs)
    for name, path in sorted(blobs.items()):
        original = path.read_bytes()
        _flip(path)
        res = ctx.run("models", "verify", "bot@v1")
        assert res.returncode == 3, (name, res.stdout, res.stderr)
        assert name in res.stderr or path.name in res.stderr, res.stderr
        path.write_bytes(original)
    assert "verified" in ctx.ok("models", "verify", "bot@v1")


def test_a_removed_blob_an_edited_record_and_a_swapped_signature_are_caught(ctx: Ctx) -> None:
    blobs = _blobs(ctx, "bot@v1")
    victim = blobs["provenance.json"]
    saved = victim.read_bytes()
    victim.unlink()
    res = ctx.run("models", "verify", "bot@v1")
    assert res.returncode == 3 and "provenance.json" in res.stderr
    victim.write_bytes(saved)
    db = sqlite3.connect(ctx.home / "registry" / "catalogue.db")
    db.execute("DROP TRIGGER versions_no_update")  # an attacker with write access (each
    record = json.loads(db.execute("SELECT record FROM versions WHERE version = 1").fetchone()[0])
    v2 = json.loads(db.execute("SELECT record FROM versions WHERE version = 2").fetchone()[0])
    record["files"]["extra.bin"] = record["files"]["model.json"]
    db.execute("UPDATE versions SET record = ? WHERE version = 1", (json.dumps(record),))
    db.commit()
    res = ctx.run("models", "verify", "bot@v1")
    assert res.returncode == 3 and "bot@v1" in res.stderr
    del record["files"]["extra.bin"]
    record["signature"] = v2["signature"]  # another version's signature
    db.execute("DROP TRIGGER IF EXISTS versions_no_update")  # run of sealtune restores it)
    db.execute("UPDATE versions SET record = ? WHERE version = 1", (json.dumps(record),))
    db.commit()
    assert ctx.run("models", "verify", "bot@v1").returncode == 3


def test_promotion_needs_a_gate_report_unless_skipped_loudly(ctx: Ctx) -> None:
    res = ctx.run("models", "promote", "bot@v1", "--stage", "prod")
    assert res.returncode == 4, res.stdout + res.stderr
    assert res.stderr.lstrip().startswith("gate:"), res.stderr
    res = ctx.run("models", "promote", "bot@v1", "--stage", "prod", "--unsafe-skip-gate")
    assert res.returncode == 0, res.stderr
    assert "--unsafe-skip-gate" in res.stderr
    actions = ctx.ok("audit", "log", "--json")
    assert "registry.unsafe_skip_gate" in actions and "registry.promote" in actions
    assert json.loads(ctx.ok("models", "show", "bot@prod", "--json"))["ref"] == "bot@v1"


def test_rollback_and_revocation_move_the_alias_and_revocation_is_permanent(ctx: Ctx) -> None:
    skip = "--unsafe-skip-gate"
    ctx.ok("models", "promote", "bot@v1", "--stage", "prod", skip)
    ctx.ok("models", "promote", "bot@v2", "--stage", "prod", skip)
    assert "bot@v1" in ctx.ok("models", "rollback", "bot", "--stage", "prod")
    ctx.ok("models", "promote", "bot@v2", "--stage", "prod", skip)
    ctx.ok("models", "revoke", "bot@v2", "--reason", "canary leaked in eval")
    assert json.loads(ctx.ok("models", "show", "bot@prod", "--json"))["ref"] == "bot@v1"
    res = ctx.run("models", "promote", "bot@v2", "--stage", "prod", skip)
    assert res.returncode == 2 and "revoked" in res.stderr
    assert ctx.run("models", "revoke", "bot@v2", "--reason", "again").returncode == 2
    shown = json.loads(ctx.ok("models", "show", "bot@v2", "--json"))
    assert shown["revoked"]["reason"] == "canary leaked in eval"


def test_a_swapped_alias_a_replayed_snapshot_and_an_expired_one_are_refused(ctx: Ctx) -> None:
    from sealtune.registry.snapshot import sign_snapshot

    ctx.ok("models", "promote", "bot@v1", "--stage", "prod", "--unsafe-skip-gate")
    reg = ctx.home / "registry"
    db = sqlite3.connect(reg / "catalogue.db")
    version, blob = db.execute("SELECT version, blob FROM snapshots ORDER BY version DESC"
                               " LIMIT 1").fetchone()
    outer = json.loads((reg / "blobs" / "sha256" / blob[7:]).read_bytes())
    import base64
    body = json.loads(base64.b64decode(outer["snapshot"]))
    body["state"]["models"]["bot"]["stages"]["prod"] = 2  # the alias swapped
    outer["snapshot"] = base64.b64encode(json.dumps(body).encode()).decode()
    forged = json.dumps(outer).encode()
    import hashlib
    name = hashlib.sha256(forged).hexdigest()
    (reg / "blobs" / "sha256" / name).write_bytes(forged)
    db.execute("DROP TRIGGER snapshots_no_update")
    db.execute("UPDATE snapshots SET blob = ? WHERE version = ?", (f"sha256:{name}", version))
    db.commit()
    res = ctx.run("models", "show", "bot@prod")
    assert res.returncode == 3 and "signature does not verify" in res.stderr
    db.execute("DROP TRIGGER IF EXISTS snapshots_no_update")  # restored by each run
    db.execute("UPDATE snapshots SET blob = ? WHERE version = ?", (blob, version))
    db.commit()
    ctx.ok("models", "show", "bot@prod")
    # replay: the catalogue as it was before the promotion, after a newer one was seen
    db.execute("DROP TRIGGER IF EXISTS snapshots_no_delete")
    db.execute("DELETE FROM snapshots WHERE version = ?", (version,))
    db.commit()
    res = ctx.run("models", "show", "bot")
    assert res.returncode == 3 and "rollback" in res.stderr, res.stderr
    # freeze: a validly signed snapshot whose expiry has passed
    from datetime import UTC, datetime, timedelta

    from sealtune.registry.signing import registry_key
    from sealtune.workspace import Workspace

    ws = Workspace.open(ctx.home, passphrase=ctx.env["SEALTUNE_PASSPHRASE"])
    try:
        key = registry_key(ws)
    finally:
        ws.close()
    stale = sign_snapshot(body["state"], version=version + 5, key=key,
                          now=datetime.now(UTC) - timedelta(days=30))
    name = hashlib.sha256(stale).hexdigest()
    (reg / "blobs" / "sha256" / name).write_bytes(stale)
    db.execute("INSERT INTO snapshots VALUES (?, ?, 'x')", (version + 5, f"sha256:{name}"))
    db.commit()
    res = ctx.run("models", "show", "bot")
    assert res.returncode == 3 and "expired" in res.stderr, res.stderr


def test_roles_limit_who_promotes_and_revokes_and_denials_are_audited(ctx: Ctx) -> None:
    ctx.ok("models", "grant", "alice", "operator", env={"SEALTUNE_ACTOR": "root-admin"})
    ctx.ok("models", "grant", "carol", "consumer", env={"SEALTUNE_ACTOR": "root-admin"})
    alice, carol = {"SEALTUNE_ACTOR": "alice"}, {"SEALTUNE_ACTOR": "carol"}
    ctx.ok("models", "promote", "bot@v1", "--stage", "staging", "--unsafe-skip-gate", env=alice)
    res = ctx.run("models", "promote", "bot@v1", "--stage", "prod", "--unsafe-skip-gate",
                  env=alice)
    assert res.returncode == 1 and "not allowed for role operator" in res.stderr
    res = ctx.run("models", "revoke", "bot@v1", "--reason", "r", env=carol)
    assert res.returncode == 1 and "role consumer" in res.stderr
    res = ctx.run("models", "register", "bot", "--from-job", ctx.env["JOB"], env=carol)
    assert res.returncode == 1
    events = [json.loads(line) for line in ctx.ok("audit", "log", "--json").splitlines()]
    denied = [e for e in events if e["action"] == "registry.denied"]
    assert [e["actor"] for e in denied] == ["alice", "carol", "carol"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, dict[str, object]]:
    import httpx

    resp = httpx.get(url, timeout=5)
    return resp.status_code, resp.json()


def _until(predicate: object, timeout: float) -> float:
    """Seconds until ``predicate()`` holds (fails after ``timeout``)."""
    import time

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s")


def _serve(ctx: Ctx, model: str) -> tuple[subprocess.Popen[bytes], str]:
    import time

    port = _free_port()
    with (ctx.tmp / "serve.stderr").open("wb") as log:
        proc = subprocess.Popen([*SEALTUNE, "serve", "--model", model, "--port", str(port)],
                                env=ctx.env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail((ctx.tmp / "serve.stderr").read_text()[-3000:])
        try:
            if _get(f"{url}/healthz")[0] == 200:
                return proc, url
        except Exception:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("the server did not come up")


def _measured(url: str) -> dict[str, object]:
    status, body = _get(f"{url}/v1/attestation")
    assert status == 200, body
    measurement = body["measurement"]
    assert isinstance(measurement, dict)
    return measurement


def test_seam_promote_serve_follow_rollback_then_revoke_refuses_within_5_s(ctx: Ctx) -> None:
    """register -> promote -> serve bot@prod -> promote/rollback followed -> revoke -> 410."""
    skip = "--unsafe-skip-gate"
    ctx.ok("models", "promote", "bot@v1", "--stage", "prod", skip)
    expected = {v: json.loads(ctx.ok("attest", "expected", f"bot@{v}", "--json"))
                for v in ("v1", "v2")}
    assert expected["v1"]["measurement"]["config"] != expected["v2"]["measurement"]["config"]
    proc, url = _serve(ctx, "bot@prod")
    try:
        assert _measured(url) == expected["v1"]["measurement"]
        ctx.ok("models", "promote", "bot@v2", "--stage", "prod", skip)
        _until(lambda: _measured(url) == expected["v2"]["measurement"], 10)
        ctx.ok("models", "rollback", "bot", "--stage", "prod")
        _until(lambda: _measured(url) == expected["v1"]["measurement"], 10)
        ctx.ok("models", "revoke", "bot@v2", "--reason", "superseded")
        assert _measured(url) == expected["v1"]["measurement"]
        ctx.ok("models", "revoke", "bot@v1", "--reason", "canary leaked")
        _until(lambda: _get(f"{url}/v1/attestation")[0] == 410, 5)  # fails after 5 s
        status, body = _get(f"{url}/v1/attestation")
        assert status == 410 and body["error"]["code"] == "model_revoked"  # type: ignore[index]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    events = ctx.ok("audit", "log", "--json")
    assert "serve.model_swapped" in events and "serve.registry_refused" in events
    res = ctx.run("serve", "--model", "bot@v1", "--port", str(_free_port()))
    assert res.returncode == 1 and "revoked" in res.stderr


def test_kill_9_during_register_promote_and_revoke_leaves_a_consistent_registry(
        ctx: Ctx) -> None:
    import signal
    import time

    commands = [("models", "register", "bot", "--from-job", ctx.env["JOB"]),
                ("models", "promote", "bot@v1", "--stage", "dev", "--unsafe-skip-gate"),
                ("models", "revoke", "bot@v2", "--reason", "killed midway")]
    for args in commands:
        for delay in (0.8, 1.6, 2.4):
            proc = subprocess.Popen([*SEALTUNE, *args], env=ctx.env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            rows = json.loads(ctx.ok("models", "list", "--json"))  # the snapshot verifies
            if args[2] == "bot@v2" and any(r["revoked"] for r in rows):
                break  # revoked once: a second revocation is refused
    for row in json.loads(ctx.ok("models", "list", "--json")):
        assert "verified" in ctx.ok("models", "verify", str(row["ref"]))
    ctx.ok("audit", "verify")


def _policy(ctx: Ctx, name: str) -> Path:
    """The default gate policy with the model-file scan only (fast: nothing in the sandbox)."""
    path = ctx.tmp / f"{name}.yaml"
    ctx.ok("assess", "policy", "init", str(path))
    text = path.read_text()
    for probe in ("utility", "canary_exposure", "membership", "extraction",
                  "pii_regurgitation", "safety_drift"):
        text = text.replace(f"  {probe}:\n    run: when-available",
                            f"  {probe}:\n    run: 'off'", 1)
    path.write_text(text)
    return path


def test_promotion_to_prod_follows_a_real_gate_report_for_that_exact_digest(ctx: Ctx) -> None:
    strict = ctx.tmp / "strict.yaml"
    ctx.ok("assess", "policy", "init", str(strict))
    text = strict.read_text()
    for probe in ("canary_exposure", "membership", "extraction", "pii_regurgitation",
                  "safety_drift"):
        text = text.replace(f"  {probe}:\n    run: when-available",
                            f"  {probe}:\n    run: 'off'")
    # utility required with a bar no model meets: a real, signed, failing report
    text = text.replace("  utility:\n    run: when-available", "  utility:\n    run: required")
    text = text.replace("max_perplexity_ratio: 1.0", "max_perplexity_ratio: 0.000001")
    strict.write_text(text)
    res = ctx.run("assess", "bot", "--policy", str(strict), "--out", str(ctx.tmp / "failed"))
    assert res.returncode == 4, res.stdout + res.stderr
    res = ctx.run("models", "promote", "bot@v1", "--stage", "prod")
    assert res.returncode == 4 and res.stderr.startswith("gate:"), res.stderr
    lenient = _policy(ctx, "lenient")
    ctx.ok("assess", "bot", "--policy", str(lenient), "--out", str(ctx.tmp / "passed"))
    ctx.ok("models", "promote", "bot@v1", "--stage", "prod")
    envelope = (ctx.tmp / "passed" / "report.dsse.json").read_bytes()
    import hashlib

    digest = "sha256:" + hashlib.sha256(envelope).hexdigest()
    promoted = [json.loads(line) for line in ctx.ok("audit", "log", "--json").splitlines()]
    (event,) = [e for e in promoted if e["action"] == "registry.promote"]
    assert event["details"]["gate_report"] == digest
    # a version registered now links that report in its signed provenance
    assert ctx.ok("models", "register", "bot", "--from-job", ctx.env["JOB"]).strip() == "bot@v3"
    ctx.ok("models", "export", "bot@v3", str(ctx.tmp / "v3"))
    assert json.loads((ctx.tmp / "v3" / "provenance.json").read_text())["gate_report"] == digest


def test_seam_register_rotate_retire_then_verify_export_and_serve(ctx: Ctx) -> None:
    """register -> rotate (every version re-wrapped) -> retire old -> verify, export, serve.

    A version still wrapped under an old key version blocks the retirement, named.
    """
    from sealtune.keys.content import content_digest
    from sealtune.keys.files import describe_file
    from sealtune.workspace import Workspace

    blobs = {**_blobs(ctx, "bot@v1"), **{f"v2/{n}": p for n, p in _blobs(ctx, "bot@v2").items()}}

    def versions() -> set[str]:
        return {f"{e.kek_uri}@{e.version}" for p in blobs.values()
                for e in describe_file(p).entries}

    assert versions() == {"local:platform@1"}
    from sealtune.keys.rotation import retire_blockers

    ws = Workspace.open(ctx.home, passphrase=ctx.env["SEALTUNE_PASSPHRASE"])
    try:
        ws.keys.rotate("platform")  # a new version, nothing re-wrapped yet
        blockers = "\n".join(retire_blockers(ws, "platform", below=2))
    finally:
        ws.close()
    assert all(str(p) in blockers for p in blobs.values()), blockers  # every version's files
    res = ctx.run("keys", "retire", "platform", "--below", "2")
    assert res.returncode != 0 and "registry/blobs/content-sha256/" in res.stderr, res.stderr
    out = ctx.ok("keys", "rotate", "platform", "--retire-old")
    assert "retired" in out, out
    assert versions() == {"local:platform@3"}
    for name, path in blobs.items():  # still named by their content digest
        assert path.name == content_digest(path), name
    for ref in ("bot@v1", "bot@v2"):
        assert "verified" in ctx.ok("models", "verify", ref)
    out_dir = ctx.tmp / "export"
    ctx.ok("models", "export", "bot@v1", str(out_dir))
    assert json.loads((out_dir / "provenance.json").read_text())["job"] == ctx.env["JOB"]
    ctx.ok("models", "promote", "bot@v2", "--stage", "prod", "--unsafe-skip-gate")
    expected = json.loads(ctx.ok("attest", "expected", "bot@v2", "--json"))["measurement"]
    proc, url = _serve(ctx, "bot@prod")
    try:
        assert _measured(url) == expected
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_kill_9_during_a_rotation_leaves_every_version_verifiable_and_the_rotation_resumes(
        ctx: Ctx) -> None:
    """A real SIGKILL after the K-th file of the re-wrap pass (the registry's files are last)."""
    script = ("import os, signal, sys; from pathlib import Path;"
              "from sealtune.workspace import Workspace;"
              "from sealtune.keys.rotation import rotate_workspace;"
              "ws = Workspace.open(Path(sys.argv[1]), passphrase=sys.argv[2]); n = [0]\n"
              "def hook(path):\n"
              "    n[0] += 1\n"
              "    if n[0] == int(sys.argv[3]): os.kill(os.getpid(), signal.SIGKILL)\n"
              "rotate_workspace(ws, 'platform', on_file=hook)")
    total = len(list((ctx.home / "registry" / "blobs" / "content-sha256").iterdir()))
    for kill_at in (total // 2, total - 1, total + 3):
        proc = subprocess.run([sys.executable, "-c", script, str(ctx.home),
                               ctx.env["SEALTUNE_PASSPHRASE"], str(kill_at)],
                              env=ctx.env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == -9, proc.stderr  # killed midway, not finished
        for ref in ("bot@v1", "bot@v2"):
            assert "verified" in ctx.ok("models", "verify", ref)
    out = ctx.ok("keys", "rotate", "platform", "--retire-old")  # resumes: no further version
    assert "current v2" in out and "retired" in out, out
    for ref in ("bot@v1", "bot@v2"):
        assert "verified" in ctx.ok("models", "verify", ref)
    ctx.ok("audit", "verify")
