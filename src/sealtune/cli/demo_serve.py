"""The demo's serving step: the trained model served in-process, one question asked.

The server runs in a thread on a free loopback port, encrypted-only, with
``dev-software`` attestation (NOT a TEE); the question goes through the
verifying client (:class:`sealtune.client.SealtuneClient`), which checks the
attestation report before it encrypts anything. Narration only: the serving
logic is :mod:`sealtune.serve`'s and the client's.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.cli._common import console
from sealtune.cli._tables import Col, print_table

if TYPE_CHECKING:
    from sealtune.workspace import Workspace


def serve_and_ask(ws: Workspace, model_dir: Path | None) -> None:
    """Serve ``model_dir`` (or the echo engine) in-process and ask it one question.

    The server runs in a thread on a free loopback port, encrypted-only, with
    ``dev-software`` attestation; the question goes through the verifying
    client (:class:`sealtune.client.SealtuneClient`), which checks the report
    before it encrypts anything.
    """
    from datetime import UTC, datetime

    from sealtune.attest.policy import VerificationPolicy
    from sealtune.attest.software import SoftwareProvider
    from sealtune.cli.serve import token_service
    from sealtune.client import SealtuneClient
    from sealtune.core.protocol import ServerKeys
    from sealtune.serve import ServeSettings, create_app
    from sealtune.serve.auth import Authenticator, RateLimit
    from sealtune.serve.token_admin import open_key_store

    engine, name, digest = _engine(ws, model_dir)
    store = open_key_store(ws)
    key, info = store.create(role="consumer", name="demo", now=datetime.now(UTC))
    ws.audit("serve.key_created", f"serve-key:{info.key_id}",
             details={"key_id": info.key_id, "role": info.role, "name": info.name})
    provider = SoftwareProvider()
    app = create_app(ServeSettings(model_id=engine.model_id, model_digest=digest, engine=name,
                                   encrypted_only=True),
                     engine=engine, keys=ServerKeys(now=time.time()), provider=provider,
                     auth=Authenticator(store, token_service(ws), limit=RateLimit(20, 40)),
                     ledger_audit=ws.ledger.append)
    with _server(app) as url:
        console.print(f"serving {engine.model_id} ({name}) on {url}: encrypted only, "
                      "dev-software attestation")
        policy = VerificationPolicy(allow_dev_attestation=True,
                                    dev_attestation_keys=frozenset({provider.fingerprint}))
        client = SealtuneClient(url, key, policy=policy, max_retries=0)
        try:
            _ask(client, engine.model_id)
        finally:
            client.close()
    console.print("server stopped; it logged request metadata only")


def _engine(ws: Workspace, model_dir: Path | None) -> tuple[Any, str, str]:
    """The trained model's engine (opened from its sealed files), else the echo engine."""
    from sealtune.serve.engines import make_engine
    from sealtune.serve.model import model_digest, resolve_model

    if model_dir is not None and model_dir.is_dir():
        files = resolve_model(str(model_dir), keys=ws.keys, workspace_root=ws.root)
        return (make_engine("transformers", files=files, model_id=model_dir.name),
                "transformers", model_digest(files))
    return (make_engine("echo", model_id="echo"), "echo",
            hashlib.sha256(b"sealtune echo engine").hexdigest())


@contextmanager
def _server(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free loopback port; yield its base URL."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_config=None,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _ask(client: Any, model_id: str) -> None:
    """Verify the attestation (shown as a table), then ask one question end to end."""
    import warnings

    from sealtune.client import DevAttestationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DevAttestationWarning)
        result = client.attest()
    print_table(console, [Col("check", whole=True), Col("ok", whole=True), Col("explanation")],
                [(c.name, "yes" if c.ok else "NO", c.explanation) for c in result.checks])
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}")
    for note in result.warnings:
        console.print(f"  note: {note}")
    question = "How do I reset my password?"
    answer = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": question}],
        max_tokens=24, temperature=0)
    console.print(f"asked through the verifying client (sealed to key id "
                  f"{result.key_configs[0].key_id}): {question}")
    console.print(f"answer (opened and authenticated): {answer.choices[0].message.content!r}"
                  " (a tiny demo model: the words are noise; the path is the point)")
