"""The inference server over real HTTP: a uvicorn server on loopback, real clients.

The official ``openai`` package talks to the plaintext API; end-to-end
encrypted requests are built with ``sealtune.core.protocol`` directly (the
client SDK comes later). Nothing is mocked: a real workspace and ledger, a
real tiny transformers model saved to disk and loaded by the engine.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from sealtune.attest.report import parse_report
from sealtune.attest.software import SoftwareProvider
from sealtune.core.protocol import (
    KeyConfig,
    ServerKeys,
    decode_key_configs,
    seal_request,
    select_key_config,
)
from sealtune.errors import IntegrityError
from sealtune.serve import ServeSettings, create_app
from sealtune.serve.auth import Authenticator, RateLimit, TokenService
from sealtune.serve.engines import Completion, Message, Sampling, TokenStream, make_engine
from sealtune.serve.keystore import KeyStore
from sealtune.serve.logs import configure_logging
from sealtune.serve.model import PlainModelDir, model_digest
from sealtune.workspace import Workspace

E2E_REQ = "application/sealtune-e2e-request"


# -- a real server in a thread ---------------------------------------------------------------


@dataclass
class Server:
    url: str
    app: Any
    keys: ServerKeys
    ws: Workspace
    consumer: str
    admin: str
    auditor: str
    tokens: TokenService
    store: KeyStore

    def ledger(self, action: str) -> list[Any]:
        self.app.state.sealtune.audit.flush()
        return list(self.ws.ledger.entries(action=action))


def _run(app: Any) -> tuple[str, Callable[[], None]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's loggers propagate to the root logger the scan reads.
    config = uvicorn.Config(app, access_log=False, log_level="debug", log_config=None,
                            lifespan="on")
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

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs" / "serve.log"
    path.parent.mkdir()
    handler = configure_logging(path=str(path), level=logging.DEBUG)
    # Everything the server side logs at any level goes to a file the scan reads; the
    # test's own clients (openai, httpx) log request bodies at DEBUG, so they stay quiet.
    root, level = logging.getLogger(), logging.getLogger().level
    root_handler = logging.FileHandler(path.parent / "root.log")
    root.addHandler(root_handler)
    root.setLevel(logging.DEBUG)
    clients = ("openai", "httpx", "httpcore", "httpx2", "httpcore2")
    quiet = {name: logging.getLogger(name).level for name in clients}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    yield path
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)
    root.setLevel(level)
    logging.getLogger("sealtune").removeHandler(handler)
    root.removeHandler(root_handler)
    handler.close()
    root_handler.close()


@pytest.fixture
def start(workspace: Workspace, log_file: Path) -> Iterator[Callable[..., Server]]:
    stops: list[Callable[[], None]] = []
    store = KeyStore(workspace.root / "serve-keys.json")
    tokens = TokenService(secrets.token_bytes(32), issuer="sealtune/test")
    now = datetime.now(UTC)
    consumer, _ = store.create(role="consumer", name="app", now=now)
    admin, _ = store.create(role="admin", now=now)
    auditor, _ = store.create(role="auditor", now=now)

    def make(engine: Any = None, *, encrypted_only: bool = False, rate: float = 1000.0,
             grace: float = 600.0, digest: str = "0" * 64) -> Server:
        engine = engine or make_engine("echo", model_id="echo")
        keys = ServerKeys(now=time.time(), grace_seconds=grace)
        settings = ServeSettings(model_id=engine.model_id, model_digest=digest,
                                 engine="test", encrypted_only=encrypted_only)
        auth = Authenticator(store, tokens, limit=RateLimit(rate, rate),
                             anonymous_limit=RateLimit(1000, 1000))
        app = create_app(settings, engine=engine, keys=keys, provider=SoftwareProvider(),
                         auth=auth, ledger_audit=workspace.ledger.append)
        url, stop = _run(app)
        stops.append(stop)
        return Server(url, app, keys, workspace, consumer, admin, auditor, tokens, store)

    yield make
    for stop in stops:
        stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _config(srv: Server) -> KeyConfig:
    report = httpx.get(f"{srv.url}/v1/attestation").json()
    return select_key_config(decode_key_configs(base64.b64decode(report["key_configs"])))


def _e2e(srv: Server, body: dict[str, Any], *, key: str | None = None,
         config: KeyConfig | None = None) -> tuple[int, str, bytes]:
    """Send one encrypted request; return the inner (status, media type, body)."""
    sealed, ctx = seal_request(config or _config(srv), json.dumps(body).encode())
    headers = {**_bearer(key or srv.consumer), "Content-Type": E2E_REQ}
    if not body.get("stream"):
        resp = httpx.post(f"{srv.url}/v1/chat/completions", content=sealed, headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "application/sealtune-e2e-response"
        head, _, inner = ctx.open_response(resp.content).partition(b"\n")
    else:
        opener = ctx.response_stream()
        with httpx.stream("POST", f"{srv.url}/v1/chat/completions", content=sealed,
                          headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "application/sealtune-e2e-chunked-response"
            plain = b"".join(opener.feed(piece) for piece in resp.iter_raw())
        plain += opener.finish()
        head, _, inner = plain.partition(b"\n")
    status, media = head.decode().split(" ", 1)
    return int(status), media, inner


def _sse(body: bytes) -> list[Any]:
    events = [e[len(b"data: "):] for e in body.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    return [json.loads(e) for e in events[:-1]]


def _chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": content}], **extra}


# -- plaintext API with the official client --------------------------------------------------


def test_openai_client_plaintext_and_stream(start: Callable[..., Server]) -> None:
    srv = start()
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=srv.consumer, max_retries=0)
    assert [m.id for m in client.models.list()] == ["echo"]
    done = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello there world"}])
    assert done.choices[0].message.content == "hello there world"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens == 3
    chunks = list(client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one two three four"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages=[], n=2)


def test_attestation_is_public_and_binds_the_key(start: Callable[..., Server]) -> None:
    srv = start()
    nonce = base64.b64encode(os.urandom(32)).decode()
    resp = httpx.get(f"{srv.url}/v1/attestation", params={"nonce": nonce})
    assert resp.status_code == 200
    report = parse_report(resp.content)
    assert report.platform == "dev-software" and not report.claimed_is_tee
    assert base64.b64encode(report.nonce or b"").decode() == nonce
    assert decode_key_configs(report.key_configs)[0] == srv.keys.current
    assert httpx.get(f"{srv.url}/v1/attestation", params={"nonce": "abc"}).status_code == 400
    assert httpx.get(f"{srv.url}/healthz").json() == {"status": "ok"}


# -- end-to-end encryption ----------------------------------------------------------------------


def test_e2e_whole_and_streamed(start: Callable[..., Server]) -> None:
    srv = start()
    status, media, body = _e2e(srv, _chat("sealed hello"))
    assert (status, media) == (200, "application/json")
    assert json.loads(body)["choices"][0]["message"]["content"] == "sealed hello"
    status, media, body = _e2e(srv, _chat("sealed stream of words", stream=True,
                                          stream_options={"include_usage": True}))
    assert (status, media) == (200, "text/event-stream")
    events = _sse(body)
    assert "".join(e["choices"][0]["delta"].get("content", "")
                   for e in events if e["choices"]) == "sealed stream of words"
    assert events[-1]["usage"]["completion_tokens"] == 4
    status, _, body = _e2e(srv, _chat("x", temperature=9))
    assert status == 400 and json.loads(body)["error"]["param"] == "temperature"


def test_output_filter_applies_in_every_mode(start: Callable[..., Server]) -> None:
    srv = start()
    prompt = "my number is 13800138000 and my mail is bob@example.com, thanks"
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=srv.consumer, max_retries=0)
    msgs: Any = [{"role": "user", "content": prompt}]
    outs = [client.chat.completions.create(model="echo", messages=msgs).choices[0]
            .message.content or "",
            "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model="echo", messages=msgs, stream=True) if c.choices),
            json.loads(_e2e(srv, _chat(prompt))[2])["choices"][0]["message"]["content"],
            "".join(e["choices"][0]["delta"].get("content", "")
                    for e in _sse(_e2e(srv, _chat(prompt, stream=True))[2]) if e["choices"])]
    expected = "my number is [PHONE] and my mail is [EMAIL], thanks"
    assert outs == [expected] * 4


def test_e2e_tampered_and_truncated_are_rejected(start: Callable[..., Server]) -> None:
    srv = start()
    sealed, _ = seal_request(_config(srv), json.dumps(_chat("tamper me")).encode())
    headers = {**_bearer(srv.consumer), "Content-Type": E2E_REQ}
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), sealed[:30], sealed[:7] + b"\0" * 60):
        resp = httpx.post(f"{srv.url}/v1/chat/completions", content=bad, headers=headers)
        assert resp.status_code == 400
        assert resp.json()["error"]["type"] == "integrity_error"
        assert b"tamper" not in resp.content
    # a response cut short fails as truncation on the client
    sealed, ctx = seal_request(_config(srv), json.dumps(_chat("a b c", stream=True)).encode())
    raw = httpx.post(f"{srv.url}/v1/chat/completions", content=sealed, headers=headers).content
    opener = ctx.response_stream()
    opener.feed(raw[:-5])
    with pytest.raises(IntegrityError):
        opener.finish()
    rejected = srv.ledger("serve.e2e_rejected")
    assert [e.details["reason"] for e in rejected] == ["integrity_error"] * 3


def test_replayed_request_is_refused_and_audited(start: Callable[..., Server]) -> None:
    """A proxy that captured an encrypted request cannot make the server run it again."""
    srv = start()
    sealed, ctx = seal_request(_config(srv), json.dumps(_chat("replay me please")).encode())
    headers = {**_bearer(srv.consumer), "Content-Type": E2E_REQ}
    first = httpx.post(f"{srv.url}/v1/chat/completions", content=sealed, headers=headers)
    assert first.status_code == 200
    assert b"replay me" in ctx.open_response(first.content)
    again = httpx.post(f"{srv.url}/v1/chat/completions", content=sealed, headers=headers)
    assert again.status_code == 400
    error = again.json()["error"]
    assert (error["type"], error["code"]) == ("integrity_error", "replayed_request")
    assert b"replay me" not in again.content
    assert [e.details["reason"] for e in srv.ledger("serve.e2e_rejected")] == \
        ["replayed_request"]
    assert _e2e(srv, _chat("a fresh seal of the same prompt"))[0] == 200


def test_stale_key_says_reattest(start: Callable[..., Server]) -> None:
    srv = start(grace=0.0)
    old = _config(srv)
    other = KeyConfig((old.key_id + 7) % 256, old.kem_id, old.public_key, old.suites)
    sealed, _ = seal_request(other, json.dumps(_chat("stale")).encode())
    resp = httpx.post(f"{srv.url}/v1/chat/completions", content=sealed,
                      headers={**_bearer(srv.consumer), "Content-Type": E2E_REQ})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "stale_key" and "re-attest" in error["message"]
    # rotation (operator/admin only) retires the old key at once with grace 0
    assert httpx.post(f"{srv.url}/v1/admin/rotate-key",
                      headers=_bearer(srv.consumer)).status_code == 403
    assert httpx.post(f"{srv.url}/v1/admin/rotate-key", headers=_bearer(srv.admin)).json()[
        "key_id"] == (old.key_id + 1) % 256
    sealed, _ = seal_request(old, json.dumps(_chat("stale")).encode())
    resp = httpx.post(f"{srv.url}/v1/chat/completions", content=sealed,
                      headers={**_bearer(srv.consumer), "Content-Type": E2E_REQ})
    assert resp.json()["error"]["type"] == "stale_key"
    assert _e2e(srv, _chat("fresh"))[0] == 200  # after re-attesting
    assert srv.ledger("serve.key_rotated")


def test_encrypted_only_refuses_plaintext(start: Callable[..., Server]) -> None:
    srv = start(encrypted_only=True)
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=srv.consumer, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="echo",
                                       messages=[{"role": "user", "content": "plain"}])
    assert "end-to-end encrypted" in str(caught.value)
    assert _e2e(srv, _chat("still works"))[0] == 200
    denied = srv.ledger("serve.denied")
    assert [e.details["reason"] for e in denied] == ["plaintext_refused"]


# -- authentication, roles, rate limits, ledger -----------------------------------------------


def test_denials_are_401_403_429_and_ledger_events(start: Callable[..., Server]) -> None:
    srv = start(rate=2.0)
    url = f"{srv.url}/v1/chat/completions"
    body = _chat("hi")
    info = srv.store.get(srv.consumer.split("_")[1])
    assert info is not None
    expired = srv.tokens.issue(info, ttl=timedelta(minutes=5),
                               now=datetime.now(UTC) - timedelta(hours=1)).token
    revoked = srv.tokens.issue(info, now=datetime.now(UTC))
    forged = TokenService(secrets.token_bytes(32), issuer="sealtune/test").issue(
        info, now=datetime.now(UTC)).token
    assert httpx.post(f"{srv.url}/v1/admin/revoke-token", json={"jti": revoked.jti},
                      headers=_bearer(srv.admin)).status_code == 200
    cases = [({}, 401), (_bearer("sealtune_0123456789abcdef_" + "x" * 43), 401),
             (_bearer(srv.consumer + "x"), 401), (_bearer(expired), 401),
             (_bearer(revoked.token), 401), (_bearer(forged), 401)]
    for headers, status in cases:
        resp = httpx.post(url, json=body, headers=headers)
        assert resp.status_code == status, headers
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{srv.url}/v1/admin/requests",
                     headers=_bearer(srv.consumer)).status_code == 403
    recent = httpx.get(f"{srv.url}/v1/admin/requests", headers=_bearer(srv.auditor))
    assert recent.status_code == 200 and recent.json()["data"]
    statuses = [httpx.post(url, json=body, headers=_bearer(srv.consumer)) for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and int(limited[0].headers["retry-after"]) >= 1
    reasons = [e.details["reason"] for e in srv.ledger("serve.denied")]
    assert reasons[:7] == ["missing_credentials", "unknown_key", "bad_secret", "expired_token",
                           "revoked_token", "invalid_token", "role_forbidden"]
    assert "rate_limited" in reasons
    events = srv.ledger("serve.denied")
    assert {e.actor for e in events} >= {"anonymous", info.key_id}
    dumped = json.dumps([e.details for e in events])
    # the whole credential, the API key's secret part and each JWT's signature
    assert srv.consumer.split("_", 2)[2] not in dumped  # sealtune_<id>_<secret>
    for credential in (srv.consumer, expired, revoked.token, forged):
        assert credential not in dumped and credential.split(".")[-1] not in dumped


# -- the tiny transformers model ----------------------------------------------------------------


def _tiny_dir(tmp_path: Path) -> Path:
    from sealtune.train.tiny import make_tiny  # the training stage's `models make-tiny`

    return make_tiny(tmp_path / "tiny-model")


def test_tiny_model_plaintext_stream_and_e2e(start: Callable[..., Server],
                                             tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    files = PlainModelDir(_tiny_dir(tmp_path))
    engine = make_engine("transformers", files=files, model_id="tiny")
    srv = start(engine, digest=model_digest(files))
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=srv.consumer, max_retries=0)
    msgs: Any = [{"role": "user", "content": "hello world"}]
    done = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12,
                                          temperature=0)
    assert done.usage is not None and done.usage.completion_tokens <= 12
    assert done.choices[0].finish_reason in ("stop", "length")
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12,
                                                 temperature=0, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == done.choices[0].message.content
    body = {"model": "tiny", "messages": msgs, "max_tokens": 12, "temperature": 0}
    status, _, inner = _e2e(srv, body)
    assert status == 200
    assert json.loads(inner)["choices"][0]["message"]["content"] == streamed
    status, _, inner = _e2e(srv, {**body, "stream": True})
    assert "".join(e["choices"][0]["delta"].get("content", "")
                   for e in _sse(inner) if e["choices"]) == streamed
    too_long = {**body, "max_tokens": 1000,
                "messages": [{"role": "user", "content": "x " * 1000}]}
    assert _e2e(srv, too_long)[0] == 400


# -- planted secrets never reach disk ------------------------------------------------------------


class _FailingEngine:
    """Raises with the prompt in the exception message (as careless libraries do)."""

    model_id = "echo"
    blocking = False

    def generate(self, messages: Any, *, sampling: Sampling) -> Completion:
        raise ValueError(f"cannot handle {messages[-1].content}")

    def stream(self, messages: Any, *, sampling: Sampling) -> TokenStream:
        def pieces() -> Iterator[str]:
            yield "partial "
            raise RuntimeError(f"broke on {messages[-1].content}")
        return TokenStream(pieces(), prompt_tokens=1)

    def count_tokens(self, text: str) -> int:
        return 1


def _files_written_since(roots: list[Path], since: float) -> Iterator[Path]:
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath, name)
                try:
                    st = path.stat()
                except OSError:
                    continue
                if st.st_mtime >= since and st.st_size < 64 << 20 and path.is_file():
                    yield path


def test_planted_prompts_and_responses_never_hit_disk(
        start: Callable[..., Server], tmp_path: Path, log_file: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    began = time.time() - 1
    planted = [f"PLANTED-{secrets.token_hex(8)}" for _ in range(9)]
    srv = start()
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=srv.consumer, max_retries=0)
    client.chat.completions.create(model="echo",
                                   messages=[{"role": "user", "content": planted[0]}])
    list(client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": planted[1]}], stream=True))
    assert planted[2] in _e2e(srv, _chat(planted[2]))[2].decode()
    assert planted[3] in _e2e(srv, _chat(planted[3], stream=True))[2].decode()
    _e2e(srv, _chat(planted[4], temperature=7))  # a 400 inside the encryption
    resp = httpx.post(f"{srv.url}/v1/chat/completions", headers=_bearer(srv.consumer),
                      json={"model": planted[5], "messages": planted[5]})
    assert resp.status_code == 400 and planted[5] not in resp.text
    resp = httpx.post(f"{srv.url}/v1/chat/completions", json=_chat(planted[8]))
    assert resp.status_code == 401 and planted[8] not in resp.text
    failing = start(_FailingEngine())
    resp = httpx.post(f"{failing.url}/v1/chat/completions", headers=_bearer(failing.consumer),
                      json=_chat(planted[6]))
    assert resp.status_code == 500 and planted[6] not in resp.text
    _, _, inner = _e2e(failing, _chat(planted[7], stream=True))
    assert b"engine_error" in inner and planted[7].encode() not in inner
    srv.app.state.sealtune.audit.flush()
    failing.app.state.sealtune.audit.flush()
    records = log_file.read_text().splitlines()
    assert len(records) >= 8 and all(json.loads(r)["caller"] for r in records if "route" in r)
    out, err = capfd.readouterr()
    scanned = 0
    for path in _files_written_since([tmp_path, Path(tempfile.gettempdir())], began):
        try:
            data = path.read_bytes()
        except OSError:  # another process's file, gone since it was listed
            continue
        scanned += 1
        for secret in planted:
            assert secret.encode() not in data, f"{secret} found in {path}"
    assert scanned >= 3  # at least the log files and the ledger
    for secret in planted:
        assert secret not in out and secret not in err


def test_engine_sees_messages_in_order() -> None:
    engine = make_engine("echo", model_id="e")
    done = engine.generate([Message("user", "a"), Message("assistant", "b"),
                            Message("user", "c d")], sampling=Sampling(max_tokens=1))
    assert (done.text, done.finish_reason, done.prompt_tokens) == ("c", "length", 4)
