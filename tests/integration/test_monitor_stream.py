"""Streamed answers are checked before they leave: plaintext server-sent events and end-to-end
encrypted chunked streams, through a real server (uvicorn on loopback) and, for the encrypted
one, the verifying client SDK.

The echo engine forces whatever a test sends into the output, so an answer carries a
training reply or a canary exactly when the prompt does. The monitor holds a keyed Bloom
filter of training replies (one of them a secret) and canaries, policy ``redact``: a
streamed answer carrying the secret reaches the client redacted (the secret is in no byte
sent), the alert is in the ledger; the demo's questions streamed come back byte for byte
as the same requests answered whole.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import httpx
import pytest

from sealtune.attest.policy import VerificationPolicy
from sealtune.attest.software import SoftwareProvider
from sealtune.client import SealtuneClient
from sealtune.core.bloom import BloomFilter
from sealtune.core.protocol import ServerKeys
from sealtune.monitor.detectors.regurgitation import MARK, CanarySet
from sealtune.monitor.policy import FORMAT, policy_from_mapping
from sealtune.monitor.runtime import build_monitor
from sealtune.serve import ServeSettings, create_app
from sealtune.serve.auth import Authenticator, RateLimit
from sealtune.serve.engines import make_engine
from sealtune.serve.keystore import KeyStore
from sealtune.serve.watch import Watch
from sealtune.workspace import Workspace

pytestmark = pytest.mark.filterwarnings(
    "ignore::sealtune.client.transport.DevAttestationWarning")

#: The ``serve_app`` fixture (tests/integration/conftest.py): uvicorn in a thread.
ServeApp = Callable[..., tuple[str, Callable[[], None]]]
SECRET = ("the vault code of the zurich branch is seven four one nine and the backup phrase "
          "is purple elephant marmalade tuesday harbour lantern so keep it safe always")
CANARY = "3 9 1 4 7 2"


def _demo() -> list[tuple[str, str]]:
    text = resources.files("sealtune.demo_data").joinpath("conversations.jsonl").read_text()
    pairs = []
    for line in text.splitlines():
        if line:
            msgs = json.loads(line)["messages"]
            user = next(m["content"] for m in msgs if m["role"] == "user")
            pairs.append((user, next(m["content"] for m in msgs if m["role"] == "assistant")))
    return pairs


@pytest.fixture
def served(workspace: Workspace, serve_app: ServeApp) -> Iterator[tuple[str, str]]:
    store = KeyStore(workspace.root / "serve-keys.json")
    key, _ = store.create(role="consumer", name="app", now=datetime.now(UTC))
    # The training replies: the demo's answers and the secret (the demo's questions are not
    # in the filter: only assistant turns are).
    replies = [answer for _, answer in _demo()] + [SECRET]
    policy = policy_from_mapping({"format": FORMAT, "detectors": {
        "regurgitation": {"output": "redact", "cooldown_seconds": 1e-6, "min_tokens": 16},
        "canary": {"output": "redact", "cooldown_seconds": 1e-6}}}, source="test")
    monitor = build_monitor(policy, model_version="echo@abababababab", audit=None, resources={
        "training_filter": BloomFilter.of_texts(replies, n=8), "canaries": CanarySet([CANARY])})
    settings = ServeSettings(model_id="echo", model_digest="ab" * 32, engine="echo")
    app = create_app(settings, engine=make_engine("echo", model_id="echo"),
                     keys=ServerKeys(now=time.time()), provider=SoftwareProvider(),
                     auth=Authenticator(store, None, limit=RateLimit(10_000, 10_000)),
                     ledger_audit=workspace.ledger.append,
                     watch=Watch(model_version="echo@abababababab", monitor=monitor))
    url, stop = serve_app(app)
    yield url, key
    stop()
    app.state.sealtune.audit.flush()


def _body(content: str, *, stream: bool) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": content}],
            "max_tokens": 200, "stream": stream}


def _sse_content(raw: bytes) -> str:
    out = []
    for line in raw.decode("utf-8").splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


def _plain(client: httpx.Client, content: str) -> tuple[bytes, str]:
    """The raw bytes of a streamed answer and the whole answer to the same request."""
    with client.stream("POST", "/v1/chat/completions", json=_body(content, stream=True)) as r:
        assert r.status_code == 200
        raw = b"".join(r.iter_raw())
    whole = client.post("/v1/chat/completions", json=_body(content, stream=False))
    return raw, whole.json()["choices"][0]["message"]["content"]


def test_plaintext_stream_never_sends_the_secret_and_benign_streams_are_unchanged(
        served: tuple[str, str], workspace: Workspace) -> None:
    url, key = served
    rng = random.Random(3)
    leaks = [f"Sure. {SECRET}.", f"{SECRET}", f"Here it is:\n{SECRET} Anything else?",
             f"Your PIN is {CANARY}. {SECRET}"]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                      timeout=60) as client:
        for text in leaks:
            raw, whole = _plain(client, text)
            assert b"marmalade" not in raw and b"zurich branch" not in raw
            assert _sse_content(raw) == whole and MARK in whole
        assert CANARY not in _sse_content(_plain(client, f"Your PIN is {CANARY}.")[0])
        questions = [q for q, _ in _demo()]
        for question in rng.sample(questions, 60):
            raw, whole = _plain(client, question)
            # (the output filter may tag PII in a question: the same tags either way)
            assert _sse_content(raw).encode() == whole.encode() and MARK not in whole
    alerts = [e.details for e in workspace.ledger.entries(action="monitor.alert")]
    # each leak twice (streamed and whole); the canary in the fourth leak and on its own
    assert sorted(a["detector"] for a in alerts) == ["canary"] * 4 + ["regurgitation"] * 8
    assert "marmalade" not in json.dumps(alerts)


def test_encrypted_stream_is_redacted_before_it_is_sealed(served: tuple[str, str],
                                                          workspace: Workspace) -> None:
    url, key = served
    client = SealtuneClient(f"{url}/v1", key,
                            policy=VerificationPolicy(allow_dev_attestation=True), max_retries=0)
    try:
        def ask(text: str, stream: bool) -> str:
            out = client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": text}], stream=stream)
            if not stream:
                return str(out.choices[0].message.content)
            return "".join(c.choices[0].delta.content or "" for c in out if c.choices)

        for text in (f"Sure. {SECRET}.", f"Note: {SECRET} and PIN {CANARY}"):
            streamed = ask(text, True)
            assert "marmalade" not in streamed and CANARY not in streamed and MARK in streamed
            assert streamed == ask(text, False)
        for question, _ in _demo()[:20]:
            streamed = ask(question, True)
            assert streamed.encode() == ask(question, False).encode() and MARK not in streamed
    finally:
        client.close()
    alerts = [e.details for e in workspace.ledger.entries(action="monitor.alert")]
    assert sorted(a["detector"] for a in alerts) == ["canary"] * 2 + ["regurgitation"] * 4
