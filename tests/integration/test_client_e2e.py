"""The verifying client SDK against a real server on loopback.

A real uvicorn server (echo engine, ``dev-software`` attestation,
encrypted-only) runs in a thread; the SDK is the official ``openai`` client
over :class:`sealtune.client.E2ETransport`. Attacks come from a
man-in-the-middle transport placed between the SDK's transport and the real
HTTP transport: it rewrites real HTTP responses (the attestation report, the
sealed response bytes) on their way back. No cryptography is mocked.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from sealtune.attest.policy import VerificationPolicy
from sealtune.attest.report import build_report, dumps_report, parse_report
from sealtune.attest.software import SoftwareProvider
from sealtune.attest.verify import VerificationFailed
from sealtune.client import AsyncE2ETransport, DevAttestationWarning, E2ETransport, SealtuneClient
from sealtune.core.protocol import ServerKeys, encode_key_configs
from sealtune.errors import AttestationError, IntegrityError, UsageError
from sealtune.serve import ServeSettings, create_app
from sealtune.serve.auth import Authenticator, RateLimit, TokenService
from sealtune.serve.engines import Message, Sampling, TokenStream, make_engine
from sealtune.serve.engines.echo import EchoEngine
from sealtune.serve.keystore import KeyStore
from sealtune.workspace import Workspace

pytestmark = pytest.mark.filterwarnings(
    "ignore::sealtune.client.transport.DevAttestationWarning")

DEV = VerificationPolicy(allow_dev_attestation=True)


@dataclass
class Server:
    url: str
    app: Any
    keys: ServerKeys
    provider: SoftwareProvider
    consumer: str
    admin: str

    @property
    def base(self) -> str:
        return f"{self.url}/v1"

    def chat_requests(self) -> list[dict[str, Any]]:
        """Request records (metadata) of completions the server received."""
        return [r for r in self.app.state.sealtune.log.recent(1000)
                if "chat/completions" in str(r.get("route", ""))]


def _run(app: Any) -> tuple[str, Callable[[], None]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, access_log=False, log_config=None, lifespan="on")
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

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


class SlowEcho(EchoEngine):
    """Echo, one token every 0.3 s: shows whether streams arrive progressively."""

    blocking = True

    def stream(self, messages: Sequence[Message], *, sampling: Sampling) -> TokenStream:
        inner = super().stream(messages, sampling=sampling)

        def slow() -> Iterator[str]:
            for piece in inner:
                time.sleep(0.3)
                yield piece
            stream.finish_reason = inner.finish_reason
            stream.completion_tokens = inner.completion_tokens

        stream = TokenStream(slow(), prompt_tokens=inner.prompt_tokens)
        return stream


@pytest.fixture
def server(workspace: Workspace, request: pytest.FixtureRequest) -> Iterator[Server]:
    store = KeyStore(workspace.root / "serve-keys.json")
    now = datetime.now(UTC)
    consumer, _ = store.create(role="consumer", name="app", now=now)
    admin, _ = store.create(role="admin", now=now)
    slow = getattr(request, "param", "echo") == "slow"
    engine = SlowEcho(model_id="echo") if slow else make_engine("echo", model_id="echo")
    keys = ServerKeys(now=time.time(), grace_seconds=0.0)
    provider = SoftwareProvider()
    settings = ServeSettings(model_id="echo", model_digest="0" * 64, engine="test",
                             encrypted_only=True)
    auth = Authenticator(store, TokenService(secrets.token_bytes(32), issuer="t"),
                         limit=RateLimit(1000, 1000), anonymous_limit=RateLimit(1000, 1000))
    app = create_app(settings, engine=engine, keys=keys, provider=provider, auth=auth,
                     ledger_audit=workspace.ledger.append)
    url, stop = _run(app)
    yield Server(url, app, keys, provider, consumer, admin)
    stop()


class Mitm(httpx.BaseTransport):
    """Sits on the path: forwards over real HTTP and may rewrite what comes back."""

    def __init__(self, *, report: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 chat: Callable[[bytes], bytes] | None = None,
                 plaintext_answer: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.report, self.chat, self.plaintext_answer = report, chat, plaintext_answer
        self.seen: list[tuple[str, str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path,
                          request.headers.get("content-type", "")))
        if self.plaintext_answer and request.url.path.endswith("/chat/completions"):
            body = {"id": "x", "object": "chat.completion", "created": 0, "model": "echo",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "forged"}}]}
            return httpx.Response(200, json=body)
        response = self.inner.handle_request(request)
        raw = b"".join(response.iter_raw())
        response.close()
        if self.report and request.url.path.endswith("/attestation"):
            raw = dumps_report(self.report(json.loads(raw)))
        elif self.chat and request.url.path.endswith("/chat/completions") \
                and response.status_code == 200:
            raw = self.chat(raw)
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-length", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=raw)

    def close(self) -> None:
        self.inner.close()


_OPEN: list[SealtuneClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _client(srv: Server, policy: VerificationPolicy = DEV,
            transport: httpx.BaseTransport | None = None) -> SealtuneClient:
    client = SealtuneClient(srv.base, srv.consumer, policy=policy, transport=transport,
                            max_retries=0)
    _OPEN.append(client)
    return client


def _ask(client: openai.OpenAI, text: str, **extra: Any) -> Any:
    return client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": text}], **extra)


def _streamed(client: openai.OpenAI, text: str) -> str:
    return "".join(c.choices[0].delta.content or "" for c in _ask(client, text, stream=True)
                   if c.choices)


# -- round trips ---------------------------------------------------------------------------------


def test_sdk_round_trip_whole_and_streamed(server: Server) -> None:
    mitm = Mitm()
    client = _client(server, transport=mitm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = _ask(client, "sealed hello world")
    assert [w.category for w in caught] == [DevAttestationWarning]
    assert "NOT a TEE" in str(caught[0].message)
    assert done.choices[0].message.content == "sealed hello world"
    assert done.usage is not None and done.usage.completion_tokens == 3
    assert _streamed(client, "one two three four") == "one two three four"
    result = client.last_attestation
    assert result is not None and result.ok and result.platform == "dev-software"
    assert not result.is_tee and any("no hardware isolation" in w for w in result.warnings)
    assert {c.name for c in result.checks} >= {"platform", "report-data", "nonce"}
    # attested once for the key; prompts crossed the wire only sealed
    assert [s[1] for s in mitm.seen].count("/v1/attestation") == 1
    assert all(ct == "application/sealtune-e2e-request" for m, p, ct in mitm.seen if m == "POST")
    assert [m.id for m in client.models.list()] == ["echo"]  # passes through in plaintext
    with pytest.raises(openai.NotFoundError):  # inner status errors map as in plaintext mode
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])


def test_default_policy_rejects_dev_software_before_sending(server: Server) -> None:
    client = _client(server, policy=VerificationPolicy())
    with pytest.raises(VerificationFailed) as caught:
        _ask(client, "never sent")
    assert isinstance(caught.value, AttestationError) and caught.value.exit_code == 3
    assert "dev-software" in caught.value.message and caught.value.hint
    assert server.chat_requests() == []


def test_refuses_other_routes_with_a_body(server: Server) -> None:
    client = _client(server)
    with pytest.raises(UsageError):
        client.completions.create(model="echo", prompt="plain prompt")
    assert server.chat_requests() == []


def test_async_transport_round_trip(server: Server) -> None:
    import asyncio

    async def go() -> tuple[str, str]:
        transport = AsyncE2ETransport(DEV)
        async with httpx.AsyncClient(transport=transport) as http:
            client = openai.AsyncOpenAI(base_url=server.base, api_key=server.consumer,
                                        http_client=http, max_retries=0)  # type: ignore[arg-type]
            done = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "async sealed"}])
            stream = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "a b c"}], stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream
                            if c.choices])
            return done.choices[0].message.content or "", text

    assert asyncio.run(go()) == ("async sealed", "a b c")


def _arrivals(pieces: Iterator[Any]) -> tuple[list[float], list[Any]]:
    start, times, items = time.monotonic(), [], []
    for item in pieces:
        times.append(time.monotonic() - start)
        items.append(item)
    return times, items


@pytest.mark.parametrize("server", ["slow"], indirect=True)
def test_streams_arrive_progressively_through_sdk_and_proxy(server: Server) -> None:
    text = "one two three four five"
    times, chunks = _arrivals(iter(_ask(_client(server), text, stream=True)))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    # 0.3 s per token: the first event (the role; the server's output filter may hold
    # words back) arrives long before the end, not buffered behind the whole answer
    assert times[0] < 1.0 < times[-1]
    with _in_process_proxy(server, DEV) as url, httpx.stream(
            "POST", f"{url}/v1/chat/completions",
            json={"model": "echo", "stream": True,
                  "messages": [{"role": "user", "content": text}]}) as resp:
        assert resp.status_code == 200
        times, pieces = _arrivals(resp.iter_bytes())
    assert b"".join(pieces).rstrip().endswith(b"data: [DONE]")
    assert len(pieces) > 3 and times[0] < 1.0 < times[-1]


# -- forged or replayed attestation ------------------------------------------------------------


def _flip_measurement(report: dict[str, Any]) -> dict[str, Any]:
    code = report["measurement"]["code"]
    report["measurement"]["code"] = ("0" if code[0] != "0" else "1") + code[1:]
    return report


def _other_key(report: dict[str, Any]) -> dict[str, Any]:
    report["key_configs"] = base64.b64encode(
        encode_key_configs((ServerKeys(now=0).current,))).decode()
    return report


def _resigned(by: SoftwareProvider) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A fully consistent report for an attacker's HPKE key, signed by the attacker's key."""
    def rewrite(report: dict[str, Any]) -> dict[str, Any]:
        parsed = parse_report(report)
        return build_report(by, key_configs=encode_key_configs((ServerKeys(now=0).current,)),
                            measurement=parsed.measurement, nonce=parsed.nonce,
                            now=datetime.now(UTC))
    return rewrite


def _other_signature(report: dict[str, Any]) -> dict[str, Any]:
    report["evidence"]["signature"] = base64.b64encode(
        SoftwareProvider()._key.sign(b"x")).decode()
    return report


@pytest.mark.parametrize("name", ["flipped-measurement", "wrong-key", "stale-nonce",
                                  "other-signer-pinned", "other-signature"])
def test_forged_reports_are_rejected(server: Server, name: str) -> None:
    policy = DEV
    if name == "other-signer-pinned":
        policy = VerificationPolicy(allow_dev_attestation=True,
                                    dev_attestation_keys=frozenset({server.provider.fingerprint}))
    if name == "stale-nonce":
        old = httpx.get(f"{server.base}/attestation",
                        params={"nonce": base64.b64encode(os.urandom(32)).decode()}).json()
        mitm = Mitm(report=lambda _: old)
    else:
        rewrite = {"flipped-measurement": _flip_measurement, "wrong-key": _other_key,
                   "other-signer-pinned": _resigned(SoftwareProvider()),
                   "other-signature": _other_signature}[name]
        mitm = Mitm(report=rewrite)
    client = _client(server, policy=policy, transport=mitm)
    with pytest.raises(VerificationFailed) as caught:
        _ask(client, "never sent")
    failed = {c.name for c in caught.value.result.checks if not c.ok}
    expected = {"flipped-measurement": "report-data", "wrong-key": "report-data",
                "stale-nonce": "nonce", "other-signer-pinned": "dev-key",
                "other-signature": "dev-signature"}[name]
    assert expected in failed, failed
    assert [m for m, _, _ in mitm.seen] == ["GET"]
    assert server.chat_requests() == []
    assert client.last_attestation is None


def test_expected_measurement_mismatch_is_rejected(server: Server) -> None:
    policy = VerificationPolicy(allow_dev_attestation=True,
                                expected_measurements={"model": "1" * 64})
    with pytest.raises(VerificationFailed):
        _ask(_client(server, policy=policy), "never sent")
    assert server.chat_requests() == []


# -- tampered, reordered, truncated, downgraded responses -----------------------------------


def _split_stream(raw: bytes) -> tuple[bytes, list[bytes], bytes]:
    """e2e-v1 chunked response: nonce (32) | (varint len | chunk)* | 0x00 | final."""
    pos, chunks = 32, list[bytes]()
    while True:
        size = 1 << (raw[pos] >> 6)
        length = int.from_bytes(raw[pos:pos + size], "big") & ((1 << (8 * size - 2)) - 1)
        if length == 0:
            return raw[:32], chunks, raw[pos:]
        chunks.append(raw[pos:pos + size + length])
        pos += size + length


def _reorder(raw: bytes) -> bytes:
    nonce, chunks, final = _split_stream(raw)
    assert len(chunks) >= 3
    chunks[1], chunks[2] = chunks[2], chunks[1]
    return nonce + b"".join(chunks) + final


def _truncate(raw: bytes) -> bytes:
    nonce, chunks, _ = _split_stream(raw)
    return nonce + b"".join(chunks)


def _flip_last(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def test_tampered_whole_response_is_rejected(server: Server) -> None:
    client = _client(server, transport=Mitm(chat=_flip_last))
    with pytest.raises(IntegrityError):
        _ask(client, "tamper with me")


@pytest.mark.parametrize("attack", [_flip_last, _reorder, _truncate])
def test_tampered_streams_are_rejected(server: Server, attack: Callable[[bytes], bytes]) -> None:
    client = _client(server, transport=Mitm(chat=attack))
    with pytest.raises(IntegrityError):
        _streamed(client, "one two three four five six")


def test_plaintext_answer_to_encrypted_request_is_an_error(server: Server) -> None:
    client = _client(server, transport=Mitm(plaintext_answer=True))
    with pytest.raises(IntegrityError, match="unsealed"):
        _ask(client, "downgrade me")


# -- key rotation -----------------------------------------------------------------------------


def test_stale_key_reattests_once_then_succeeds(server: Server) -> None:
    mitm = Mitm()
    client = _client(server, transport=mitm)
    assert _ask(client, "before").choices[0].message.content == "before"
    first = client.last_attestation
    rotated = httpx.post(f"{server.base}/admin/rotate-key",
                         headers={"Authorization": f"Bearer {server.admin}"})
    assert rotated.status_code == 200  # grace 0: the old key is gone at once
    assert _streamed(client, "after rotation") == "after rotation"
    assert client.last_attestation is not first
    paths = [p for _, p, _ in mitm.seen]
    assert paths.count("/v1/attestation") == 2
    assert paths.count("/v1/chat/completions") == 3  # before, stale, retried


def test_persistent_stale_key_is_not_retried_forever(server: Server) -> None:
    """A server that always answers stale_key gets exactly one re-attestation."""
    class AlwaysStale(Mitm):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/chat/completions"):
                self.seen.append(("POST", request.url.path, ""))
                return httpx.Response(400, json={"error": {
                    "message": "stale", "type": "stale_key", "param": None,
                    "code": "stale_key"}})
            return super().handle_request(request)

    mitm = AlwaysStale()
    with pytest.raises(openai.BadRequestError):
        _ask(_client(server, transport=mitm), "x")
    paths = [p for _, p, _ in mitm.seen]
    assert paths.count("/v1/attestation") == 2 and paths.count("/v1/chat/completions") == 2


def test_client_needs_a_policy_and_an_encrypting_http_client() -> None:
    with pytest.raises(UsageError):
        SealtuneClient("http://127.0.0.1:1/v1", "k")
    with pytest.raises(UsageError):
        SealtuneClient("http://127.0.0.1:1/v1", "k", http_client=httpx.Client())
    client = SealtuneClient("http://127.0.0.1:1/v1", "k", policy=DEV)
    _OPEN.append(client)
    copy = client.with_options(timeout=5)
    assert isinstance(copy, SealtuneClient) and copy.e2e_transport is client.e2e_transport
    assert isinstance(client.e2e_transport, E2ETransport)


# -- the proxy (in-process here; the CLI is exercised in test_client_proxy.py) ----------------


@contextmanager
def _in_process_proxy(srv: Server, policy: VerificationPolicy,
                      transport: httpx.BaseTransport | None = None) -> Iterator[str]:
    from sealtune.client.proxy import make_proxy

    proxy = make_proxy(srv.url, policy=policy, api_key=srv.consumer, transport=transport)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy.url
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)


def test_proxy_refuses_to_forward_when_attestation_fails(server: Server) -> None:
    with _in_process_proxy(server, VerificationPolicy()) as url:
        resp = httpx.post(f"{url}/v1/chat/completions",
                          json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
        assert resp.status_code == 502
        error = resp.json()["error"]
        assert error["type"] == "attestation_error" and error["message"].startswith("attestation:")
    assert server.chat_requests() == []


def test_proxy_turns_a_truncated_stream_into_an_error(server: Server) -> None:
    with _in_process_proxy(server, DEV, Mitm(chat=_truncate)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="local", max_retries=0)
        with pytest.raises((openai.APIError, httpx.HTTPError)):
            _streamed(client, "one two three four five")
        client.close()
