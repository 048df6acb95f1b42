"""Bad input and slow clients against a real uvicorn server on loopback, raw sockets.

The server runs on :func:`sealtune.serve.connections.uvicorn_config` exactly as
``sealtune serve`` runs it (the subprocess test goes through the CLI itself),
with short deadlines. Clients are plain sockets, so a test can stop halfway
through a request head or body, and can speak from other loopback addresses
(127.0.0.2, ...) to be another client.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from sealtune.attest.software import SoftwareProvider
from sealtune.core.protocol import ServerKeys, decode_key_configs, seal_request, select_key_config
from sealtune.serve import ServeSettings, create_app
from sealtune.serve.auth import Authenticator, RateLimit, TokenService
from sealtune.serve.connections import uvicorn_config
from sealtune.serve.engines import make_engine
from sealtune.serve.keystore import KeyStore
from sealtune.serve.settings import ConnectionLimits
from sealtune.workspace import Workspace

E2E_REQ = "application/sealtune-e2e-request"
CHAT = "/v1/chat/completions"


@dataclass
class Srv:
    host: str
    port: int
    key: str
    admin: str
    app: Any

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
def serve(workspace: Workspace) -> Iterator[Callable[..., Srv]]:
    stops: list[Callable[[], None]] = []
    store = KeyStore(workspace.root / "serve-keys.json")
    consumer, _ = store.create(role="consumer", now=datetime.now(UTC))
    admin, _ = store.create(role="admin", now=datetime.now(UTC))
    tokens = TokenService(secrets.token_bytes(32), issuer="sealtune/test")

    def make(limits: ConnectionLimits | None = None, *, encrypted_only: bool = False) -> Srv:
        engine = make_engine("echo", model_id="echo")
        settings = ServeSettings(model_id="echo", model_digest="0" * 64, engine="echo",
                                 encrypted_only=encrypted_only)
        auth = Authenticator(store, tokens, limit=RateLimit(1000, 1000),
                             anonymous_limit=RateLimit(1000, 1000))
        app = create_app(settings, engine=engine, keys=ServerKeys(now=time.time()),
                         provider=SoftwareProvider(), auth=auth,
                         ledger_audit=workspace.ledger.append)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn_config(app, limits=limits or ConnectionLimits(), log_config=None,
                                access_log=False, lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=30)
            sock.close()

        stops.append(stop)
        return Srv("127.0.0.1", sock.getsockname()[1], consumer, admin, app)

    yield make
    for stop in stops:
        stop()


def _connect(srv: Srv, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection((srv.host, srv.port), timeout=10,
                                    source_address=(source, 0))
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed ``sock`` (reading whatever it sent); fails after."""
    began = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {seconds} s")
    return time.monotonic() - began


def _is_open(sock: socket.socket) -> bool:
    """Whether the server has not closed ``sock`` (reads, and drops, what it sent)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return False
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.setblocking(True)


def _request(srv: Srv, body: bytes, *, source: str = "127.0.0.1",
             media: str = "application/json") -> tuple[int, bytes]:
    """One request over a raw socket (so the body is sent byte-exact); (status, body)."""
    with _connect(srv, source) as sock:
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.key}\r\n"
                     f"Content-Type: {media}\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        raw = b""
        sock.settimeout(30)
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


def _healthy(srv: Srv, source: str = "127.0.0.1") -> bool:
    with _connect(srv, source) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(10)
        return sock.recv(65536).startswith(b"HTTP/1.1 200")


# -- deadlines ------------------------------------------------------------------------------


def test_idle_and_half_sent_heads_are_closed_after_the_header_timeout(
        serve: Callable[..., Srv]) -> None:
    srv = serve(ConnectionLimits(header_timeout=1.0, body_timeout=1.0))
    idle = _connect(srv)
    partial = _connect(srv)
    partial.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    assert _closed_within(idle, 5) < 4
    assert _closed_within(partial, 5) < 4
    # a slow drip of header bytes does not extend the deadline: it counts from the start
    drip = _connect(srv)
    began, sent = time.monotonic(), 0
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            if not _is_open(drip):
                break
            drip.send(bytes([byte]))
            sent += 1
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert time.monotonic() - began < 4 and sent < 20
    # a kept-alive connection that starts its next request and stalls is closed too
    kept = _connect(srv)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    kept.settimeout(5)
    assert kept.recv(65536).startswith(b"HTTP/1.1 200")
    kept.sendall(b"GET /healthz HTTP/1.1\r\n")
    assert _closed_within(kept, 5) < 4
    for sock in (idle, partial, drip, kept):
        sock.close()
    assert _healthy(srv)  # and the server answers as before


def test_a_half_sent_body_is_closed_after_the_body_timeout(serve: Callable[..., Srv]) -> None:
    srv = serve(ConnectionLimits(header_timeout=1.0, body_timeout=1.0))
    sock = _connect(srv)
    sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.key}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                 '{"model": "echo", '.encode())
    assert _closed_within(sock, 5) < 4
    sock.close()
    status, body = _request(srv, json.dumps({"model": "echo", "messages": [
        {"role": "user", "content": "still fine"}]}).encode())
    assert status == 200 and b"still fine" in body
    records = srv.app.state.sealtune.log.recent(10)
    assert "client_disconnected" in [r.get("error") for r in records]


def test_a_slow_answer_is_not_cut_by_the_deadlines(serve: Callable[..., Srv]) -> None:
    """The deadlines bound the client's sending, not the server's answering."""
    srv = serve(ConnectionLimits(header_timeout=1.0, body_timeout=1.0))
    words = " ".join(f"w{i}" for i in range(20))
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}) as c:
        for _ in range(3):  # kept alive across requests, with pauses shorter than the deadline
            done = c.post(CHAT, json={"model": "echo",
                                      "messages": [{"role": "user", "content": words}]})
            assert done.status_code == 200
            time.sleep(0.5)


# -- connection caps --------------------------------------------------------------------------


def test_connections_per_address_and_in_all_are_capped(serve: Callable[..., Srv]) -> None:
    srv = serve(ConnectionLimits(header_timeout=30.0, max_per_client=5, max_connections=8))
    held = [_connect(srv) for _ in range(5)]
    time.sleep(0.2)
    extra = _connect(srv)
    extra.settimeout(5)
    refused = extra.recv(65536)
    assert refused.startswith(b"HTTP/1.1 429") and b"too_many_connections" in refused
    assert _closed_within(extra, 5) < 4
    assert all(_is_open(s) for s in held)
    assert _healthy(srv, "127.0.0.2")  # another client is served meanwhile
    others = [_connect(srv, "127.0.0.2") for _ in range(3)]
    time.sleep(0.2)
    busy = _connect(srv, "127.0.0.3")
    busy.settimeout(5)
    assert busy.recv(65536).startswith(b"HTTP/1.1 503")
    for sock in [*held, *others, extra, busy]:
        sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server sees the closes, the counts drop
        try:
            if _healthy(srv):
                break
        except (ConnectionResetError, BrokenPipeError):
            pass
        time.sleep(0.1)
    assert _healthy(srv) and _healthy(srv, "127.0.0.3")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_two_thousand_idle_sockets_leave_the_server_bounded_and_answering(
        tmp_path: Path) -> None:
    """``sealtune serve`` itself: 2,000 idle connections from one address settle at
    ``--max-connections-per-client`` descriptors (the others are refused and closed at
    once); other clients are served throughout, and once the idle ones time out, the
    descriptors are back where they started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(tmp_path / "home"), "SEALTUNE_UNSAFE_FAST_KDF": "1",
                "SEALTUNE_PASSPHRASE": "hard-" + secrets.token_hex(8)})
    cli = [sys.executable, "-m", "sealtune"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True, timeout=120)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "serve.err").open("wb")
    proc = subprocess.Popen([*cli, "serve", "--engine", "echo", "--model", "echo", "--port",
                             str(port), "--header-timeout", "3", "--max-connections-per-client",
                             "50"], env=env, stdout=log, stderr=log)
    srv = Srv("127.0.0.1", port, "", "", None)
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "serve.err").read_text()
            try:
                if _healthy(srv):
                    break
            except OSError:
                time.sleep(0.2)
        time.sleep(0.5)
        base = _fds(proc.pid)
        began = time.monotonic()
        for _ in range(2000):
            idle.append(_connect(srv))
        settled = None
        while time.monotonic() - began < 2.5:  # within the 3 s header deadline
            assert _healthy(srv, "127.0.0.2")
            if _fds(proc.pid) <= base + 50 + 3:
                settled = _fds(proc.pid)
                break
            time.sleep(0.1)
        assert settled is not None, (base, _fds(proc.pid))
        assert sum(_is_open(s) for s in idle) == 50  # the admitted ones, still waiting
        time.sleep(max(0.0, began + 4 - time.monotonic()))  # past the header deadline
        assert _fds(proc.pid) <= base + 3
        assert sum(_is_open(s) for s in idle) == 0
        assert _healthy(srv)
    finally:
        for sock in idle:
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


# -- bad JSON: 400, never 500; inside the encryption in encrypted mode ---------------------------


_CHAT_PREFIX = b'{"model": "echo", "messages": [{"role": "user", "content": '
_BAD_BODIES = {
    "deep-list": (b"[" * 100_000, "json_too_deep"),
    "deep-object": (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "json_too_deep"),
    "deep-inside": (_CHAT_PREFIX + b"[" * 10_000 + b"]" * 10_000 + b"}]}", "json_too_deep"),
    "lone-surrogate": (_CHAT_PREFIX + b'"zqx-planted \\ud800 zqx-planted"}]}', "invalid_unicode"),
    "lone-low-surrogate-key": (b'{"\\udc00": 1}', "invalid_unicode"),
    "encoded-surrogate": (_CHAT_PREFIX + b'"zqx-planted \xed\xa0\x80"}]}', "invalid_unicode"),
    "invalid-utf8": (_CHAT_PREFIX + b'"zqx-planted \xff\xfe"}]}', "invalid_unicode"),
    "nan": (b'{"model": "echo", "temperature": NaN, "messages": []}', "invalid_json"),
}


@pytest.mark.parametrize("name", sorted(_BAD_BODIES))
def test_bad_json_is_a_400_with_a_code_in_plaintext(serve: Callable[..., Srv],
                                                    name: str) -> None:
    srv = serve()
    body, code = _BAD_BODIES[name]
    status, answer = _request(srv, body)
    assert status == 400, answer[:200]
    error = json.loads(answer)["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert b"zqx-planted" not in answer  # the input is never echoed
    # a good request with an emoji (a surrogate *pair* escape) still works
    good = _CHAT_PREFIX + b'"ok \\ud83d\\ude00"}]}'
    status, answer = _request(srv, good)
    assert status == 200 and "ok \U0001f600" in json.loads(answer)["choices"][0]["message"][
        "content"]


def test_bad_json_is_an_encrypted_400_in_encrypted_mode(serve: Callable[..., Srv]) -> None:
    srv = serve(encrypted_only=True)
    report = httpx.get(f"{srv.url}/v1/attestation").json()
    config = select_key_config(decode_key_configs(base64.b64decode(report["key_configs"])))
    for name, (body, code) in _BAD_BODIES.items():
        sealed, ctx = seal_request(config, body)
        status, answer = _request(srv, sealed, media=E2E_REQ)
        assert status == 200, (name, answer[:200])  # the outer answer says nothing
        head, _, inner = ctx.open_response(answer).partition(b"\n")
        assert head == b"400 application/json", name
        assert json.loads(inner)["error"]["code"] == code, name


def test_bad_json_on_admin_routes_and_in_tokens_is_refused_cleanly(
        serve: Callable[..., Srv]) -> None:
    srv = serve()
    with _connect(srv) as sock:
        body = b"[" * 60_000
        sock.sendall(f"POST /v1/admin/revoke-token HTTP/1.1\r\nHost: x\r\nAuthorization: "
                     f"Bearer {srv.admin}\r\nContent-Type: application/json\r\nContent-Length: "
                     f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    # a JWT whose (unverified) header is deeply nested JSON: 401, never a 500
    header = base64.urlsafe_b64encode(b"[" * 700 + b"]" * 700).rstrip(b"=").decode()
    token = f"{header}.e30.c2ln"
    resp = httpx.post(f"{srv.url}{CHAT}", headers={"Authorization": f"Bearer {token}"},
                      json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_token"
    deep = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).rstrip(b"=").decode()
    resp = httpx.post(f"{srv.url}{CHAT}", headers={"Authorization": f"Bearer {deep}.e30.c2ln"},
                      json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 401
