"""The monitor inside a real server: metrics, traces, ledger, webhook and logs hold no text.

A uvicorn server on loopback with the echo engine (every prompt is forced
into the output), Prometheus metrics, OpenTelemetry spans (in-memory
exporter), the default detectors plus a webhook to a receiver on 127.0.0.1.
1,000 unique planted strings go in as prompts (and so come out as outputs);
a prefix sweep from one key raises alerts. Then every place the run wrote
is scanned for every planted string.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from sealtune.attest.software import SoftwareProvider
from sealtune.cli import main
from sealtune.core.protocol import ServerKeys
from sealtune.monitor.policy import FORMAT, policy_from_mapping
from sealtune.monitor.prometheus import PrometheusSink
from sealtune.monitor.runtime import build_monitor
from sealtune.monitor.tracing import configure_tracing
from sealtune.serve import ServeSettings, create_app
from sealtune.serve.auth import Authenticator, RateLimit
from sealtune.serve.engines import make_engine
from sealtune.serve.keystore import KeyStore
from sealtune.serve.logs import configure_logging
from sealtune.serve.watch import ServerResponses, Watch
from sealtune.workspace import Workspace

#: The ``serve_app`` fixture (tests/integration/conftest.py): uvicorn in a thread.
ServeApp = Callable[..., tuple[str, Callable[[], None]]]


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    _Receiver.bodies = []
    httpd = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/alerts", _Receiver.bodies
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs" / "serve.log"
    path.parent.mkdir()
    handler = configure_logging(path=str(path), level=logging.DEBUG)
    root, level = logging.getLogger(), logging.getLogger().level
    root_handler = logging.FileHandler(path.parent / "root.log")
    root.addHandler(root_handler)
    root.setLevel(logging.DEBUG)
    quiet = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    yield path.parent
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)
    root.setLevel(level)
    logging.getLogger("sealtune").removeHandler(handler)
    root.removeHandler(root_handler)
    handler.close()
    root_handler.close()


def test_planted_strings_appear_nowhere(serve_app: ServeApp, workspace: Workspace,
                                        receiver: tuple[str, list[bytes]],
                                        logs: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    url, bodies = receiver
    store = KeyStore(workspace.root / "serve-keys.json")
    key, info = store.create(role="consumer", name="app", now=datetime.now(UTC))
    key_id = info.key_id
    engine = make_engine("echo", model_id="echo")
    settings = ServeSettings(model_id="echo", model_digest="ab" * 32, engine="echo")
    auth = Authenticator(store, None, limit=RateLimit(10_000, 10_000))
    policy = policy_from_mapping({"format": FORMAT, "webhook": {"url": url},
                                  "detectors": {"prefix_sweep": {"threshold": 5}}},
                                 source="test")
    metrics, exporter = PrometheusSink(), InMemorySpanExporter()
    responses = ServerResponses(auth)
    monitor = build_monitor(policy, model_version="echo@abababababab", audit=None,
                            metrics=metrics, responses=responses)
    watch = Watch(model_version="echo@abababababab", metrics=metrics, monitor=monitor,
                  tracer=configure_tracing(exporter=exporter))
    app = create_app(settings, engine=engine, keys=ServerKeys(now=time.time()),
                     provider=SoftwareProvider(), auth=auth,
                     ledger_audit=workspace.ledger.append, watch=watch, responses=responses)
    base, stop = serve_app(app, timeout=30, log_level="debug")
    planted = [f"PLANT{secrets.token_hex(8)}X" for _ in range(1000)]
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as client:
            for i, p in enumerate(planted):
                # Half the prompts share a long prefix: a sweep the detector must flag.
                content = (f"Please complete the record of customer number forty {p}"
                           if i % 2 else f"{p} what is the weather like today")
                resp = client.post("/v1/chat/completions", json={
                    "model": "echo", "messages": [{"role": "user", "content": content}],
                    "max_tokens": 64, "stream": i % 5 == 0})
                assert resp.status_code == 200
                if i % 5 == 0:
                    assert p in resp.text  # the echo engine forced it into the output
                else:
                    assert p in resp.json()["choices"][0]["message"]["content"]
            scrape = metrics.exposition().decode()
    finally:
        stop()
    app.state.sealtune.audit.flush()
    monitor.flush()
    assert 'sealtune_monitor_alerts_total{action="alert",detector="prefix_sweep"}' in scrape
    assert 'sealtune_requests_total{error="none",method="POST",route="/v1/chat/completions",' \
           'status="200"} 1000.0' in scrape
    assert 'sealtune_time_to_first_token_seconds_count{stream="true"} 200.0' in scrape
    assert 'sealtune_time_to_first_token_seconds_count{stream="false"} 800.0' in scrape
    assert "sealtune_queue_depth 0.0" in scrape
    alerts = list(workspace.ledger.entries(action="monitor.alert"))
    assert alerts and alerts[0].details["key_id"] == key_id
    assert bodies and json.loads(bodies[0])["detector"] == "prefix_sweep"
    spans = exporter.get_finished_spans()
    assert len(spans) >= 1000
    places = {
        "metrics": scrape,
        "spans": json.dumps([dict(s.attributes or {}) | {"name": s.name} for s in spans]),
        "ledger": json.dumps([e.to_json() for e in workspace.ledger.entries()]),
        "webhook": b"".join(bodies).decode(),
        "logs": "".join(p.read_text("utf-8") for p in logs.iterdir()),
        "captured": "".join(capsys.readouterr()),
    }
    for where, text in places.items():
        leaked = [p for p in planted if p in text]
        assert not leaked, f"{len(leaked)} planted strings in {where}"
    assert "PLANT" not in "".join(places.values())


def test_alerts_cli_lists_alerts_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEALTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", "monitor-" + secrets.token_hex(8))
    monkeypatch.setenv("SEALTUNE_UNSAFE_FAST_KDF", "1")
    assert main(["init"]) == 0
    ws = Workspace.open(tmp_path / "home")
    try:
        ws.ledger.append(actor="sealtune-monitor", action="monitor.alert",
                         resource="serve-key:k1", outcome="failure",
                         details={"detector": "canary", "key_id": "k1", "model_version": "m@x",
                                  "score": 1.0, "threshold": 1.0, "time": 1.0,
                                  "action": "revoke_key"})
    finally:
        ws.close()
    capsys.readouterr()
    assert main(["monitor", "alerts", "--json", "--since", "1h"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["detector"], r["key_id"], r["action"]) for r in rows] == [
        ("canary", "k1", "revoke_key")]
    assert main(["monitor", "alerts", "--since", "not-a-time"]) == 2
    capsys.readouterr()
    assert main(["monitor", "detectors"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("regurgitation", "canary", "prefix_sweep",
                                           "repeat_divergence", "query_shift", "volume"))
