"""Rollback, truncation and forks of a workspace's audit log, through the CLI as a user runs it.

The attacker can write the workspace (``ledger.db``, ``ledger.trust``) but
holds neither the ledger key nor a witness key. Every attack that used to
pass ``audit verify`` (exit 0) must now exit 3, or, where only an outside
checkpoint can tell (both files rolled back together), pass honestly without
one and fail with ``--trusted`` or at the witnesses.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.cli import main
from sealtune.config import WitnessPolicyConfig, load_config
from sealtune.core.cosignature import CosignatureSigner
from sealtune.core.hashchain import CompactRange, leaf_hash
from sealtune.core.note import open_checkpoint
from sealtune.keys.keyfile import KdfParams
from sealtune.ledger import Ledger
from sealtune.ledger.entry import canonical_json
from sealtune.outputs import write_atomic
from sealtune.workspace import Workspace

PASS = "rollback-" + "x" * 8
Cli = Callable[..., int]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    monkeypatch.setenv("SEALTUNE_HOME", str(root))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", PASS)
    monkeypatch.setenv("SEALTUNE_UNSAFE_FAST_KDF", "1")
    assert main(["init"]) == 0
    return root


def cli(*args: str) -> int:
    return main(list(args))


def said(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def copy_state(root: Path, to: Path) -> None:
    """Copy the files as a backup would (every command closed, so no WAL is pending)."""
    assert not (root / "ledger.db-wal").exists()
    to.mkdir(exist_ok=True)
    for name in ("ledger.db", "ledger.trust"):
        shutil.copy2(root / name, to / name)


def restore(saved: Path, root: Path, *names: str) -> None:
    for name in names:
        for suffix in ("-wal", "-shm"):
            (root / (name + suffix)).unlink(missing_ok=True)
        shutil.copy2(saved / name, root / name)


def count(root: Path) -> int:
    with sqlite3.connect(root / "ledger.db") as conn:
        n = int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    conn.close()
    return n


def test_a_fresh_workspace_is_signed_and_verifies(home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("audit", "verify") == 0
    out = said(capsys.readouterr().out)
    assert "global checkpoint at 3 entries" in out and "no witness policy configured" in out


def test_every_appending_command_leaves_a_signed_checkpoint(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "plain.txt"
    src.write_text("hello")
    ws = Workspace.open(home, passphrase=PASS, check_ledger=False)
    verifier = ws.ledger_verifier()
    for args in (["keys", "create", "k2", "--backend", "local"],
                 ["seal", str(src), str(tmp_path / "out.sealed")]):
        assert cli(*args) == 0
        n = count(home)
        trust = (home / "ledger.trust").read_text()
        cp = open_checkpoint(trust, verifier)
        assert cp.size == n and cp.origin == ws.origin  # everything the command wrote is signed
        with Ledger.open(ws.ledger_path, signer=None, origin=ws.origin, create=False) as ledger:
            report = ledger.verify(verifier, trust_state=trust)
        assert report.ok and report.unsigned_tail == 0 and report.global_size == n


def test_deleted_database(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "ledger.db").unlink()
    assert cli("audit", "verify") == 3
    assert "ledger.db is missing" in said(capsys.readouterr().err)
    assert cli("keys", "create", "k9", "--backend", "local") == 3  # no silent new ledger
    assert not (home / "ledger.db").exists()


def test_deleted_newest_checkpoints_and_a_rewritten_signed_entry(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("keys", "create", "k2", "--backend", "local") == 0
    n = count(home)
    with sqlite3.connect(home / "ledger.db") as conn:  # the careful attacker
        leaf = bytes(conn.execute("SELECT leaf FROM entries WHERE seq = ?", (n,)).fetchone()[0])
        forged = canonical_json({**json.loads(leaf), "resource": "zz"})
        conn.execute("UPDATE entries SET leaf = ?, leaf_hash = ?, resource = 'zz' WHERE seq = ?",
                     (forged, leaf_hash(forged), n))
        conn.execute("DELETE FROM global_checkpoints WHERE size >= ?", (n,))
        conn.execute("DELETE FROM checkpoints WHERE size > 0 AND segment = "
                     "(SELECT max(segment) FROM segments) AND size >= "
                     "(SELECT size FROM segments ORDER BY segment DESC LIMIT 1)")
        hashes = [bytes(h) for (h,) in conn.execute("SELECT leaf_hash FROM entries ORDER BY seq")]
        cr = CompactRange()
        cr.extend(hashes)
        conn.execute("UPDATE segments SET frontier = ?, chain_head = ?", (cr.to_bytes(),
                                                                         hashes[-1]))
    conn.close()
    ws = Workspace.open(home, passphrase=PASS, check_ledger=False)
    with Ledger.open(ws.ledger_path, signer=None, origin=ws.origin, create=False) as ledger:
        assert ledger.verify(ws.ledger_verifier()).ok  # blind: an unsigned tail, nothing more
    capsys.readouterr()
    assert cli("audit", "verify") == 3
    assert "do not match the trust state" in said(capsys.readouterr().err)


def test_restored_older_copy(home: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    copy_state(home, tmp_path / "old")
    for name in ("k2", "k3"):
        assert cli("keys", "create", name, "--backend", "local") == 0
    restore(tmp_path / "old", home, "ledger.db")
    before = count(home)
    capsys.readouterr()
    assert cli("audit", "verify") == 3
    assert "rolled back" in said(capsys.readouterr().err)
    assert cli("keys", "create", "k4", "--backend", "local") == 3  # refused before appending
    assert count(home) == before
    ws = Workspace.open(home, passphrase=PASS, check_ledger=False)
    assert ws.keyfile.get("catalogue", "k4") is None  # and before acting unaudited
    assert ws.keyfile.get("catalogue", "k3") is not None
    capsys.readouterr()
    # Reading the broken log stays possible (that is how it is investigated), with a warning.
    assert cli("audit", "log", "--json") == 0
    out, err = capsys.readouterr()
    assert "fails its trust check" in said(err) and "key.create" in out
    assert cli("audit", "export", "--format", "csv") == 0
    assert "fails its trust check" in said(capsys.readouterr().err)
    assert count(home) == before  # reading appended nothing


def test_rollback_of_both_files_needs_an_outside_checkpoint(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy_state(home, tmp_path / "old")
    assert cli("keys", "create", "k2", "--backend", "local") == 0
    capsys.readouterr()
    assert cli("audit", "checkpoint") == 0
    kept = tmp_path / "auditor-checkpoint.txt"  # what an auditor keeps elsewhere
    kept.write_text(capsys.readouterr().out)
    restore(tmp_path / "old", home, "ledger.db", "ledger.trust")
    assert cli("audit", "verify") == 0  # honest limitation: both files agree
    assert "no witness policy configured" in capsys.readouterr().out
    assert cli("audit", "verify", "--trusted", str(kept)) == 3
    assert "a trusted checkpoint covers" in said(capsys.readouterr().err)


def test_unsafe_reset_trust(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "ledger.trust").unlink()
    assert cli("audit", "verify") == 3
    assert cli("keys", "create", "k2", "--backend", "local") == 3
    capsys.readouterr()
    assert cli("audit", "verify", "--unsafe-reset-trust") == 0
    assert "--unsafe-reset-trust" in capsys.readouterr().err  # it warns
    assert cli("audit", "verify") == 0
    assert cli("audit", "log", "--action", "ledger.unsafe_trust_reset", "--json") == 0
    assert '"previous_trusted_size": null' in capsys.readouterr().out  # and it is logged


# -- witnesses ---------------------------------------------------------------------------


class RunningWitness:
    def __init__(self, root: Path, ws: Workspace) -> None:
        from sealtune.ledger.witness import Witness, WitnessHome, make_server

        self.home, self.vkey = WitnessHome.init(root, name=f"witness.test/{root.name}",
                                                passphrase=PASS, kdf=KdfParams.unsafe_fast())
        self.home.add_log(ws.origin, ws.ledger_signer().verifier_key)
        witness = Witness(signer=self.home.signer(PASS), logs=self.home.logs(), home=self.home)
        self.server = make_server(witness, port=0)
        self.url = self.server.url
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def witnesses(home: Path, tmp_path: Path) -> Iterator[Callable[[int], list[RunningWitness]]]:
    started: list[RunningWitness] = []

    def start(n: int) -> list[RunningWitness]:
        ws = Workspace.open(home, passphrase=PASS, check_ledger=False)
        try:
            new = [RunningWitness(tmp_path / f"w{len(started) + i}", ws) for i in range(n)]
        finally:
            ws.close()
        started.extend(new)
        return new

    yield start
    for w in started:
        w.stop()


def set_policy(home: Path, k: int, keys: list[str], *, max_unwitnessed: int = 0) -> None:
    cfg = load_config(home / "config.toml")
    policy = WitnessPolicyConfig(k=k, keys=tuple(keys), max_unwitnessed=max_unwitnessed)
    cfg = replace(cfg, ledger=replace(cfg.ledger, witnesses=policy))
    write_atomic(home / "config.toml", cfg.to_toml().encode())


def test_k_of_n_with_one_witness_down(home: Path, witnesses: Callable[[int], list[RunningWitness]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    w1, w2 = witnesses(2)
    set_policy(home, 1, [w1.vkey, w2.vkey])
    w2.stop()
    assert cli("audit", "checkpoint", "--witness", w1.url, "--witness", w2.url) == 0
    err = capsys.readouterr().err
    assert "cosigned size" in err and "unreachable" in err
    assert cli("audit", "verify") == 0
    assert "cosigned by 1 witnesses (1 required)" in said(capsys.readouterr().out)
    set_policy(home, 2, [w1.vkey, w2.vkey])
    assert cli("audit", "checkpoint", "--witness", w1.url, "--witness", w2.url) == 1
    assert cli("audit", "verify") == 3
    assert "has 1 of the 2 witness cosignatures" in said(capsys.readouterr().err)


def test_entries_after_the_witnessed_checkpoint_are_tolerated_up_to_the_policy(
    home: Path, witnesses: Callable[[int], list[RunningWitness]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (w1,) = witnesses(1)
    set_policy(home, 1, [w1.vkey], max_unwitnessed=1000)
    assert cli("audit", "checkpoint", "--witness", w1.url) == 0
    assert cli("keys", "create", "later", "--backend", "local") == 0  # appends, signs, unwitnessed
    capsys.readouterr()
    assert cli("audit", "verify") == 0
    assert "not yet witnessed" in said(capsys.readouterr().err)
    set_policy(home, 1, [w1.vkey], max_unwitnessed=0)  # strict: the newest must be witnessed
    assert cli("audit", "verify") == 3
    assert "has 0 of the 1 witness cosignatures" in said(capsys.readouterr().err)
    assert cli("audit", "checkpoint", "--witness", w1.url) == 0
    assert cli("audit", "verify") == 0


def test_witness_refuses_a_rollback_and_a_fork(
    home: Path, tmp_path: Path, witnesses: Callable[[int], list[RunningWitness]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (w1,) = witnesses(1)
    set_policy(home, 1, [w1.vkey])
    assert cli("audit", "checkpoint", "--witness", w1.url) == 0
    copy_state(home, tmp_path / "old")  # cosigned at this size
    assert cli("keys", "create", "k2", "--backend", "local") == 0
    assert cli("audit", "checkpoint", "--witness", w1.url) == 0
    restore(tmp_path / "old", home, "ledger.db", "ledger.trust")
    assert cli("audit", "verify") == 0  # the old checkpoint's cosignature is genuine
    capsys.readouterr()
    assert cli("audit", "checkpoint", "--witness", w1.url) == 3  # but the witness saw more
    assert "rolled back" in capsys.readouterr().err
    for name in ("f1", "f2", "f3"):  # a fork that grows past what the witness saw
        assert cli("keys", "create", name, "--backend", "local") == 0
    assert cli("audit", "checkpoint", "--witness", w1.url) == 3
    assert "forked" in capsys.readouterr().err


def test_an_edited_witness_size_is_only_a_hint(
    home: Path, witnesses: Callable[[int], list[RunningWitness]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (w1,) = witnesses(1)
    set_policy(home, 1, [w1.vkey])
    assert cli("audit", "checkpoint", "--witness", w1.url) == 0
    assert cli("keys", "create", "k2", "--backend", "local") == 0
    for size in (10**6, 1):  # above the log, or stale: the witness's 409 says what it holds
        with sqlite3.connect(home / "ledger.db") as conn:
            conn.execute("UPDATE witness_sizes SET size = ?", (size,))
        conn.close()
        assert cli("audit", "checkpoint", "--witness", w1.url) == 0
        assert "cosigned size" in capsys.readouterr().err


def test_forged_cosignature_is_not_counted(
    home: Path, witnesses: Callable[[int], list[RunningWitness]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (w1,) = witnesses(1)
    set_policy(home, 1, [w1.vkey])
    assert cli("audit", "checkpoint") == 0
    note = capsys.readouterr().out
    text = note[: note.index("\n\n") + 1]
    size = int(text.split("\n")[1])
    impostor = CosignatureSigner(Ed25519PrivateKey.generate(), w1.home.signer(PASS).name)
    name, blob64 = impostor.cosign(text, 1_700_000_000).rstrip("\n").split(" ")[1:]
    key_id = int(w1.vkey.split("+")[1], 16)  # it claims the real witness's name and key id
    blob = key_id.to_bytes(4, "big") + base64.b64decode(blob64)[4:]
    forged = f"\u2014 {name} {base64.b64encode(blob).decode()}"
    with sqlite3.connect(home / "ledger.db") as conn:
        conn.execute("INSERT INTO cosignatures (size, name, key_id, line) VALUES (?, ?, ?, ?)",
                     (size, impostor.name, key_id, forged))
    conn.close()
    assert cli("audit", "verify") == 3
    assert "0 of the 1 witness cosignatures" in said(capsys.readouterr().err)
    assert cli("audit", "checkpoint", "--witness", w1.url) == 0  # the real one counts
    assert cli("audit", "verify") == 0


def _open_files(root: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target == str(root / "ledger.db"):
            out.append(target)
    return out


def test_the_ledger_is_checked_and_opened_once(home: Path) -> None:
    ws = Workspace.open(home, passphrase=PASS)
    _ = ws.keyfile  # unlocking checks the ledger against the trust state ...
    ledger = ws.ledger  # ... and that connection is the one used afterwards
    assert ws.ledger is ledger and len(_open_files(home)) == 1
    ws.close()
    assert _open_files(home) == []
