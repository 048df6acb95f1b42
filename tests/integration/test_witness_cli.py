"""``sealtune witness`` as a real process, and the workspace files a user gets (subprocesses)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

SEALTUNE = [sys.executable, "-m", "sealtune"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    base.update({
        "SEALTUNE_HOME": str(tmp_path / "ws"),
        "SEALTUNE_PASSPHRASE": "ws-pass-" + secrets.token_hex(8),
        "SEALTUNE_WITNESS_PASSPHRASE": "witness-pass-" + secrets.token_hex(8),
        "SEALTUNE_UNSAFE_FAST_KDF": "1",
    })
    return base


def run(
    env: dict[str, str], *args: str, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    def pre() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False, preexec_fn=pre)


def ok(env: dict[str, str], *args: str) -> str:
    res = run(env, *args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


class Served:
    def __init__(self, env: dict[str, str], directory: Path, port: int = 0) -> None:
        self.proc = subprocess.Popen([*SEALTUNE, "witness", "serve", "--dir", str(directory),
                                      "--port", str(port)], env=env, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()
        self.url = first.split(" listening on ")[1].split()[0]
        self.vkey = self.proc.stderr.readline().split()[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def witness_dir(env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    ok(env, "init")
    directory = tmp_path / "witness"
    vkey = ok(env, "witness", "init", str(directory), "--name", "witness.test/w1").strip()
    assert vkey.startswith("witness.test/w1+")
    origin = ok(env, "audit", "checkpoint").split("\n")[0]
    ok(env, "witness", "add-log", str(directory), "--origin", origin,
       "--key", ok(env, "audit", "key").strip())
    yield directory


def set_policy(env: dict[str, str], vkey: str, url: str | None = None) -> None:
    path = Path(env["SEALTUNE_HOME"]) / "config.toml"
    doc = tomllib.loads(path.read_text())
    doc["ledger"]["witnesses"] = {"k": 1, "keys": [vkey], "urls": [url] if url else []}
    path.write_text(tomli_w.dumps(doc))


def origin_of(env: dict[str, str]) -> str:
    cfg = tomllib.loads((Path(env["SEALTUNE_HOME"]) / "config.toml").read_text())
    return f"sealtune.local/{cfg['workspace']['id']}/ledger\n"


def test_witness_state_is_durable_before_it_answers(env: dict[str, str],
                                                    witness_dir: Path) -> None:
    served = Served(env, witness_dir)
    try:
        set_policy(env, served.vkey)
        res = run(env, "audit", "checkpoint", "--witness", served.url)
        assert res.returncode == 0 and "cosigned size" in res.stderr
        assert res.stdout.startswith(origin_of(env))  # stdout is the checkpoint alone
        served.kill()  # SIGKILL right after it answered
        state = json.loads((witness_dir / "state.json").read_text())
        (held,) = state["logs"].values()
        assert held["size"] == 3  # what it cosigned (init's three entries) was on disk
        ok(env, "keys", "create", "k2", "--backend", "local")
        served = Served(env, witness_dir)
        set_policy(env, served.vkey, url=served.url)  # the configured URL is the default
        res = run(env, "audit", "checkpoint")
        assert res.returncode == 0 and "cosigned size 4" in " ".join(res.stderr.split())
        assert "cosigned by 1 witnesses" in " ".join(ok(env, "audit", "verify").split())
        second = run(env, "witness", "serve", "--dir", str(witness_dir), "--port", "0")
        assert second.returncode != 0 and "another witness process" in second.stderr
    finally:
        served.kill()


def test_witness_refuses_to_start_without_logs(env: dict[str, str], tmp_path: Path) -> None:
    directory = tmp_path / "lonely"
    ok(env, "witness", "init", str(directory), "--name", "witness.test/w2")
    res = run(env, "witness", "serve", "--dir", str(directory), "--port", "0")
    assert res.returncode == 2 and "lists no log" in res.stderr
    (directory / "logs.toml").unlink()
    res = run(env, "witness", "serve", "--dir", str(directory), "--port", "0")
    assert res.returncode == 1 and "not found" in res.stderr


def test_workspace_files_are_private_under_umask_022(env: dict[str, str]) -> None:
    res = run(env, "init", umask=0o022)
    assert res.returncode == 0, res.stderr
    home = Path(env["SEALTUNE_HOME"])
    # hold the database open in another process so the -wal and -shm files exist
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('PRAGMA journal_mode=WAL'); "
        "c.execute('SELECT count(*) FROM entries').fetchone(); "
        "print('ready', flush=True); time.sleep(30)"), str(home / "ledger.db")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        res = run(env, "keys", "create", "k2", "--backend", "local", umask=0o022)
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 10
        names = ["ledger.db", "ledger.db-wal", "ledger.db-shm", "ledger.trust"]
        while not all((home / n).exists() for n in names) and time.monotonic() < deadline:
            time.sleep(0.1)
        modes = {n: stat.S_IMODE((home / n).stat().st_mode) for n in names}
        assert modes == dict.fromkeys(names, 0o600)
    finally:
        holder.kill()
        holder.wait(30)
        assert holder.stdout is not None
        holder.stdout.close()
