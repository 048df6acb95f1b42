"""Shared fixtures: real workspaces in temp dirs (no mocks of keyrings or ledgers)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sealtune.config import WorkspaceConfig
from sealtune.keys.keyfile import KdfParams, KeyFile
from sealtune.workspace import Workspace

# Tests never inherit a developer's workspace or passphrase.
for _var in ("SEALTUNE_HOME", "SEALTUNE_PASSPHRASE", "SEALTUNE_ACTOR"):
    os.environ.pop(_var, None)


#: The ``sealtune`` command, run as a subprocess the way a user runs it.
SEALTUNE = [sys.executable, "-m", "sealtune"]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``sealtune`` subprocess: this process's less every
    ``SEALTUNE_`` variable, with a home, a unique passphrase (the test-only fast KDF) and
    a temp dir of its own under ``tmp_path``; ``extra`` adds or overrides variables."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(tmp_path / "home"),
                "SEALTUNE_PASSPHRASE": "cli-" + secrets.token_hex(8),
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "TMPDIR": str(tmp), "COLUMNS": "200", **extra})
    return env


def run(env: dict[str, str], *args: str, timeout: float = 300,
        ) -> subprocess.CompletedProcess[str]:
    """``sealtune ARGS`` in ``env``; its exit status is the caller's to check."""
    return subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def ok(env: dict[str, str], *args: str) -> str:
    """``sealtune ARGS`` in ``env``, which must succeed; its standard output."""
    res = run(env, *args)
    assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-2000:])
    return res.stdout


@pytest.fixture
def passphrase() -> str:
    """A unique passphrase per test (also a planted string: it must never hit disk)."""
    return "pp-" + secrets.token_hex(12)


@pytest.fixture
def bare_workspace(tmp_path: Path, passphrase: str) -> Workspace:
    """A workspace with config and an unlocked keyring but no ledger use.

    For backend-level tests that exercise a Keyring directly; anything that
    audits (KeyService, files) needs the full ``workspace`` fixture.
    """
    root = tmp_path / "bare-ws"
    root.mkdir(mode=0o700)
    config = WorkspaceConfig(
        workspace_id=secrets.token_hex(8), created=datetime.now(UTC).isoformat(timespec="seconds")
    )
    (root / "config.toml").write_text(config.to_toml())
    ws = Workspace(root, config, lambda: passphrase)
    ws._keyfile = KeyFile.create(ws.keyfile_path, passphrase, kdf=KdfParams.unsafe_fast())
    return ws


@pytest.fixture
def workspace(tmp_path: Path, passphrase: str) -> Iterator[Workspace]:
    """A fully initialised workspace with local keys ``k1``, ``k2`` (AES) and ``ksm4`` (SM4)."""
    ws = Workspace.init(
        tmp_path / "ws", passphrase=passphrase, kdf=KdfParams.unsafe_fast(), default_key="k1"
    )
    ws.keys.create("k2", backend="local", algorithm="aes-256-gcm")
    ws.keys.create("ksm4", backend="local", algorithm="sm4-gcm")
    yield ws
    ws.close()


# -- storage servers: a real PostgreSQL and an S3 HTTP server, one per session -------------
# Each pytest-xdist worker is its own session, so each gets its own cluster and server
# (sockets and ports never collide). Both are stopped at the end of the session.

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb refuses to run as root: run PostgreSQL's tools as the postgres user then."""
    if os.geteuid() != 0:
        return argv
    import shlex

    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster on a Unix socket; yields its base URL."""
    import shutil
    import subprocess
    import tempfile

    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN}): run scripts/install --test")
    # Short path: a Unix socket path must fit in 107 bytes.
    top = Path(tempfile.mkdtemp(prefix="stpg-", dir="/tmp"))
    data, sock = top / "data", top / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(top, "postgres")
        shutil.chown(sock, "postgres")
    run = dict(check=True, capture_output=True, timeout=120)
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                                 "-U", "postgres", "--no-sync"]), **run)
    opts = f"-k {sock} -p 5432 -c listen_addresses= -c fsync=off -c max_connections=50"
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts,
                                 "-l", str(top / "log"), "-w", "start"]), **run)
    try:
        yield f"postgresql://postgres@/postgres?host={sock}&port=5432"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                     "-w", "stop"]), capture_output=True, timeout=120, check=False)
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A PostgreSQL URL with a schema of this test's own (``&schema=t_<random>``)."""
    return f"{postgres_server}&schema=t_{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server (a test double of S3) on a free 127.0.0.1 port; yields its URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto's S3 server did not start (is moto[server] installed?)")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Standard AWS_* variables pointing boto3 at the test server (dummy credentials)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh bucket on the test server (no Object Lock)."""
    import boto3

    name = f"b-{secrets.token_hex(6)}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name
