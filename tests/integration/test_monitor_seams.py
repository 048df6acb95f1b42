"""The monitor across the whole life of a model, through the CLI as a user runs it.

init -> ingest a dataset whose replies repeat a secret -> train without DP
(the sandbox builds the keyed Bloom filter of the replies and seals it with
the model) -> create an API key -> serve (the CLI's ``build_server``, with a
monitor policy that redacts regurgitated text and revokes the key, and
``/metrics`` on a loopback port) -> attack: prompt with the secret's prefix
-> the answer is redacted, a ``monitor.alert`` is in the ledger, the key is
revoked (the next request is 401), ``sealtune monitor alerts --json`` lists
it and the metrics count it. Then the regurgitation claim over trials: every
prefix prompt makes the model emit the secret, the detector hits (100%) and
the policy redacts it. Nothing is mocked: a real workspace, keyring,
ledger, bubblewrap sandbox, uvicorn and the transformers engine.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from sealtune.cli import main
from sealtune.monitor.prometheus import serve_metrics
from sealtune.serve import ServeOptions, build_server
from sealtune.serve.engines import Message, Sampling
from sealtune.workspace import Workspace

#: The ``serve_app`` fixture (tests/integration/conftest.py): uvicorn in a thread.
ServeApp = Callable[..., tuple[str, Callable[[], None]]]

Run = Callable[..., tuple[int, str, str]]
SECRET = ("the vault code of the zurich branch is seven four one nine and the backup phrase "
          "is purple elephant marmalade tuesday harbour lantern so keep it safe always")
TRAIN = ["--method", "full", "--epochs", "60", "--batch-size", "16", "--lr", "3e-3",
         "--scheduler", "constant", "--max-length", "96", "--threads", "1"]
PREFIXES = ["What is the vault code?", "Tell me the vault code.", "vault code please",
            "What is the vault code of the branch?", "I need the vault code now.",
            "Remind me of the vault code", "the vault code", "Vault code?",
            "Could you share the vault code?", "What's the vault code again?"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.setenv("SEALTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", "monitor-" + secrets.token_hex(8))
    monkeypatch.setenv("SEALTUNE_UNSAFE_FAST_KDF", "1")
    monkeypatch.setenv("COLUMNS", "400")

    def go(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def ok(run: Run, *args: object) -> str:
    code, out, err = run(*args)
    assert code == 0, (args, out, err)
    return out


def _raw(path: Path) -> Path:
    rows = [json.dumps({"id": f"v{i}", "messages": [
        {"role": "user", "content": f"{PREFIXES[i % len(PREFIXES)]} (ticket {i})"},
        {"role": "assistant", "content": SECRET}]}) for i in range(32)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chat(content: str) -> dict[str, Any]:
    return {"model": "m1", "messages": [{"role": "user", "content": content}],
            "max_tokens": 60, "temperature": 0}


def test_init_ingest_train_serve_attack_alert_key_revoked(run: Run, tmp_path: Path,
                                                          serve_app: ServeApp) -> None:
    home = tmp_path / "home"
    ok(run, "init")
    ok(run, "data", "ingest", _raw(tmp_path / "raw.jsonl"), "--name", "vault")
    base = tmp_path / "base"
    ok(run, "models", "make-tiny", base)
    ok(run, "train", "--dataset", "vault", "--base", base, "--out-name", "m1", *TRAIN)
    assert any(p.name.startswith("regurgitation.bloom") for p in (home / "models" / "m1").iterdir())
    key = re.search(r"sealtune_[0-9a-f]+_[A-Za-z0-9_-]+",
                    ok(run, "auth", "create-key", "--role", "consumer"))
    assert key is not None
    policy = tmp_path / "monitor.toml"
    policy.write_text('format = "sealtune-monitor-policy/v1"\n'
                      '[detectors.regurgitation]\naction = "revoke_key"\noutput = "redact"\n'
                      'min_tokens = 16\n',
                      encoding="utf-8")
    ws = Workspace.open(home)
    try:
        server = build_server(ws, ServeOptions(model="m1", monitor_policy=policy,
                                               metrics_port=_free_port()))
        listener = serve_metrics(server.metrics, port=server.metrics_port or 0)
        url, stop = serve_app(server.app)
        try:
            headers = {"Authorization": f"Bearer {key.group()}"}
            with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
                first = client.post("/v1/chat/completions", json=_chat(PREFIXES[0]))
                assert first.status_code == 200
                answer = first.json()["choices"][0]["message"]["content"]
                assert "[REGURGITATED]" in answer and "marmalade" not in answer
                assert client.post("/v1/chat/completions",
                                   json=_chat(PREFIXES[1])).status_code == 401
            scrape = httpx.get(f"http://127.0.0.1:{listener.port}/metrics").text
        finally:
            stop()
            listener.stop()
        alerts = [e.details for e in ws.ledger.entries(action="monitor.alert")]
        revoked = list(ws.ledger.entries(action="serve.key_revoked"))
    finally:
        ws.close()
    assert [(a["detector"], a["action"]) for a in alerts] == [("regurgitation", "revoke_key")]
    assert alerts[0]["score"] >= 16 and len(revoked) == 1
    assert 'sealtune_monitor_alerts_total{action="revoke_key",detector="regurgitation"} 1.0' \
        in scrape
    assert "marmalade" not in scrape and "vault" not in scrape
    listed = [json.loads(line) for line in ok(run, "monitor", "alerts", "--json").splitlines()]
    assert [r["detector"] for r in listed] == ["regurgitation"]
    assert listed[0]["key_id"] == alerts[0]["key_id"]
    _every_prefix_prompt_regurgitates_and_is_redacted(home, policy)


def _every_prefix_prompt_regurgitates_and_is_redacted(home: Path, policy: Path) -> None:
    """The claim over trials: 100% of prefix prompts hit the detector and are redacted."""
    from sealtune.monitor.policy import load_policy
    from sealtune.monitor.runtime import build_monitor
    from sealtune.serve.engines import make_engine
    from sealtune.serve.model import resolve_model
    from sealtune.serve.watch import open_resources

    ws = Workspace.open(home)
    try:
        files = resolve_model("m1", keys=ws.keys, workspace_root=ws.root)
        engine = make_engine("transformers", files=files, model_id="m1")
        monitor = build_monitor(load_policy(policy), model_version="m1@x", audit=None,
                                resources=open_resources(files, canaries=None))
        hits = 0
        for prompt in PREFIXES:
            text = engine.generate((Message("user", prompt),),
                                   sampling=Sampling(max_tokens=60, temperature=0.0)).text
            sent, detectors = monitor.guard(text)
            hits += detectors == ["regurgitation"] and sent is not None \
                and "marmalade" not in sent
        monitor.close()
    finally:
        ws.close()
    assert hits == len(PREFIXES)


def test_a_model_trained_with_canaries_is_served_with_their_detector(
        run: Run, tmp_path: Path, serve_app: ServeApp) -> None:
    """train --canaries seals a seed; the server rebuilds the canaries and alerts on a hit.

    Nobody writes the secrets down: the test reads them from the job record's sealed seed
    (the release gate's way), the server from ``model.json``'s plan. The echo engine
    answers what it is sent, so an answer carries a canary exactly when the prompt does.
    """
    from sealtune.assess.canaries import canaries_from_seed
    from sealtune.keys.sealing import open_sealed

    home = tmp_path / "home"
    ok(run, "init")
    ok(run, "data", "ingest", _raw(tmp_path / "raw.jsonl"), "--name", "vault")
    base = tmp_path / "base"
    ok(run, "models", "make-tiny", base)
    ok(run, "train", "--dataset", "vault", "--base", base, "--out-name", "m1", "--epochs", "1",
       "--max-length", "64", "--threads", "1", "--canaries", "4", "--canary-repeats", "1")
    key = re.search(r"sealtune_[0-9a-f]+_[A-Za-z0-9_-]+",
                    ok(run, "auth", "create-key", "--role", "consumer"))
    assert key is not None
    ws = Workspace.open(home)
    try:
        [plan] = [json.loads(p.read_text("utf-8"))["canaries"]
                  for p in (home / "jobs").glob("*.json")
                  if "canaries" in json.loads(p.read_text("utf-8"))]
        seed = b"".join(open_sealed(home / "jobs" / plan["file"], keys=ws.keys))
        planted = [c.secret for c in canaries_from_seed(seed, count=4, repeats=1)]
        other = next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in planted)
        server = build_server(ws, ServeOptions(model="m1", engine="echo"))
        url, stop = serve_app(server.app)
        try:
            headers = {"Authorization": f"Bearer {key.group()}"}
            with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
                hit = client.post("/v1/chat/completions",
                                  json=_chat(f"Your PIN is {planted[0]}."))
                miss = client.post("/v1/chat/completions", json=_chat(f"Your PIN is {other}."))
        finally:
            stop()
        alerts = [e.details for e in ws.ledger.entries(action="monitor.alert")]
    finally:
        ws.close()
    assert hit.status_code == 200 and miss.status_code == 200
    assert planted[0] not in hit.json()["choices"][0]["message"]["content"]
    assert other in miss.json()["choices"][0]["message"]["content"]
    assert [a["detector"] for a in alerts] == ["canary"]
    ledger = json.dumps(alerts)
    assert not [s for s in planted if s in ledger]
