"""Fixtures with real key services: a SoftHSM2 token and an OpenBao dev server.

Nothing here is mocked. ``softhsm`` initialises a fresh SoftHSM2 token in the
test's temp dir (its own ``softhsm2.conf`` via ``SOFTHSM2_CONF``);
``openbao_server`` runs one ``bao server -dev`` for the whole session on a
free loopback port with a random root token and the transit engine enabled,
and ``openbao`` gives each test its own key prefix on it. Both fail, saying
what to install, when the component is missing (``scripts/install --test``
installs them).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sealtune.config import OpenBaoConfig, Pkcs11Config, WorkspaceConfig
from sealtune.keys.keyfile import KdfParams, KeyFile
from sealtune.workspace import Workspace

PIN_ENV = "SEALTUNE_PKCS11_PIN"
TOKEN_ENV = "SEALTUNE_OPENBAO_TOKEN"
SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)

WorkspaceFactory = Callable[..., Workspace]


# -- SoftHSM2 ------------------------------------------------------------------------


def _softhsm_module() -> str | None:
    explicit = os.environ.get("SEALTUNE_TEST_PKCS11_MODULE")
    if explicit:
        return explicit
    return next((m for m in SOFTHSM_MODULES if Path(m).exists()), None)


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pkcs11Config:
    """A fresh SoftHSM2 token in ``tmp_path``; the user PIN is set in ``$SEALTUNE_PKCS11_PIN``."""
    import pkcs11  # noqa: F401 - a missing install step must fail, not skip
    module, util = _softhsm_module(), shutil.which("softhsm2-util")
    if module is None or util is None:
        pytest.fail("needs SoftHSM2: run scripts/install --test (apt-get install softhsm2)")
    tokendir = tmp_path / "softhsm-tokens"
    tokendir.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    label = f"st-{secrets.token_hex(6)}"
    pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        check=True,
        capture_output=True,
        timeout=30,
    )
    monkeypatch.setenv(PIN_ENV, pin)
    return Pkcs11Config(module=module, token_label=label, pin_env=PIN_ENV)


# -- OpenBao ----------------------------------------------------------------------------


def _bao_binary() -> str | None:
    beside = Path(sys.executable).parent / "bao"
    if beside.exists():
        return str(beside)
    return shutil.which("bao")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _healthy(addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _start_bao(bao: str, home: Path, token: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start a dev server on a free port; retry if another process took the port."""
    # A clean environment: no developer BAO_*/VAULT_* settings, no token helper in $HOME.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    for attempt in range(3):
        port = _free_port()
        addr = f"http://127.0.0.1:{port}"
        with (home / f"bao-{attempt}.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    bao,
                    "server",
                    "-dev",
                    f"-dev-root-token-id={token}",
                    f"-dev-listen-address=127.0.0.1:{port}",
                    "-dev-no-store-token",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=home,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if _healthy(addr):
                return proc, addr
            time.sleep(0.1)
        _stop(proc)
    log_text = (home / "bao-2.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the OpenBao dev server did not start:\n{log_text}")


@pytest.fixture(scope="session")
def openbao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One real ``bao server -dev`` for the session with transit at ``transit``.

    Yields ``(addr, root token)``; the process is always stopped (terminate,
    then kill after a timeout).
    """
    import hvac  # a missing install step must fail, not skip
    bao = _bao_binary()
    if bao is None:
        pytest.fail("needs the OpenBao binary 'bao': run scripts/install --test")
    home = tmp_path_factory.mktemp("openbao")
    token = secrets.token_hex(16)
    proc, addr = _start_bao(bao, home, token)
    try:
        client = hvac.Client(url=addr, token=token)
        client.sys.enable_secrets_engine("transit", path="transit")
        client.adapter.close()
        yield addr, token
    finally:
        _stop(proc)


@pytest.fixture
def openbao(openbao_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> OpenBaoConfig:
    """An OpenBaoConfig on the session's dev server with a key prefix of this test's own.

    The token is put in ``$SEALTUNE_OPENBAO_TOKEN``; loopback bypasses any proxy.
    """
    addr, token = openbao_server
    monkeypatch.setenv(TOKEN_ENV, token)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return OpenBaoConfig(
        addr=addr, mount="transit", token_env=TOKEN_ENV, key_prefix=f"t{secrets.token_hex(4)}-"
    )


# -- workspaces ------------------------------------------------------------------------------


@pytest.fixture
def make_workspace(tmp_path: Path, passphrase: str) -> Iterator[WorkspaceFactory]:
    """Build workspaces configured with the given backends.

    ``make_workspace(pkcs11=..., openbao=...)`` returns a bare workspace
    (config and unlocked keyring, no ledger) for backend tests;
    ``full=True`` runs ``Workspace.init`` (ledger, default local key) for
    KeyService tests and is skipped until the ledger package exists.
    """
    made: list[Workspace] = []

    def make(
        *,
        pkcs11: Pkcs11Config | None = None,
        openbao: OpenBaoConfig | None = None,
        full: bool = False,
    ) -> Workspace:
        root = tmp_path / f"ws-{len(made)}"
        if full:
            ws = Workspace.init(
                root,
                passphrase=passphrase,
                kdf=KdfParams.unsafe_fast(),
                pkcs11=pkcs11,
                openbao=openbao,
            )
        else:
            root.mkdir(mode=0o700)
            config = WorkspaceConfig(
                workspace_id=secrets.token_hex(8),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                pkcs11=pkcs11,
                openbao=openbao,
            )
            (root / "config.toml").write_text(config.to_toml())
            ws = Workspace(root, config, lambda: passphrase)
            ws._keyfile = KeyFile.create(ws.keyfile_path, passphrase, kdf=KdfParams.unsafe_fast())
        made.append(ws)
        return ws

    yield make
    for ws in made:
        ws.close()


ServeApp = Callable[..., tuple[str, Callable[[], None]]]


@pytest.fixture
def serve_app() -> Iterator[ServeApp]:
    """Run an ASGI app under uvicorn in a thread on a loopback socket: ``(url, stop)``.

    Keyword arguments go to ``uvicorn.Config`` (``log_level="debug"`` for a test that
    scans the logs). Servers still running when the test ends are stopped.
    """
    import threading

    import uvicorn

    stops: list[Callable[[], None]] = []

    def start(app: object, *, timeout: float = 60,
              **config: object) -> tuple[str, Callable[[], None]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        settings: dict[str, object] = {"access_log": False, "log_config": None, "lifespan": "on"}
        server = uvicorn.Server(uvicorn.Config(app, **{**settings, **config}))  # type: ignore[arg-type]
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        done = False

        def stop() -> None:
            nonlocal done
            if not done:
                done = True
                server.should_exit = True
                thread.join(timeout=30)
                sock.close()

        stops.append(stop)
        return f"http://127.0.0.1:{sock.getsockname()[1]}", stop

    yield start
    for stop in stops:
        stop()
