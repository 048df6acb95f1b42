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
the policy redacts it. The same claim for streamed answers (server-sent
events and the end-to-end encrypted chunked stream through the verifying
SDK): the secret is in no byte the server sends, each trial is an alert, and
a streamed answer too short to be reported is the whole answer byte for
byte. Nothing is mocked: a real workspace, keyring, ledger, bubblewrap
sandbox, uvicorn and the transformers engine. The model is trained once per
module (worker) and each test works on a copy of its workspace.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
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
#: max_tokens of an answer long enough to hit the filter's windows, too short to report.
SHORT_TOKENS = 28
PREFIXES = ["What is the vault code?", "Tell me the vault code.", "vault code please",
            "What is the vault code of the branch?", "I need the vault code now.",
            "Remind me of the vault code", "the vault code", "Vault code?",
            "Could you share the vault code?", "What's the vault code again?"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def vault_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A workspace holding ``m1``, trained without DP on replies that repeat the secret."""
    root = tmp_path_factory.mktemp("vault")
    passphrase = "monitor-" + secrets.token_hex(8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEALTUNE_HOME", str(root / "home"))
        mp.setenv("SEALTUNE_PASSPHRASE", passphrase)
        mp.setenv("SEALTUNE_UNSAFE_FAST_KDF", "1")
        torch.set_num_threads(1)
        assert main(["init"]) == 0
        assert main(["data", "ingest", str(_raw(root / "raw.jsonl")), "--name", "vault"]) == 0
        assert main(["models", "make-tiny", str(root / "base")]) == 0
        assert main(["train", "--dataset", "vault", "--base", str(root / "base"),
                     "--out-name", "m1", *TRAIN]) == 0
    return root / "home", passphrase


@pytest.fixture
def vault(vault_model: tuple[Path, str], run: Run, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the trained workspace, at the ``run`` fixture's SEALTUNE_HOME."""
    home = tmp_path / "home"
    shutil.copytree(vault_model[0], home)
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", vault_model[1])
    return home


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


def test_init_ingest_train_serve_attack_alert_key_revoked(run: Run, vault: Path, tmp_path: Path,
                                                          serve_app: ServeApp) -> None:
    home = vault
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


def _sse_content(raw: bytes) -> str:
    return "".join(choice["delta"].get("content") or ""
                   for line in raw.decode("utf-8").splitlines() if line.startswith("data: {")
                   for choice in json.loads(line[6:])["choices"])


def _secret_runs(text: str) -> list[str]:
    """The runs of 4 consecutive words of the secret found in ``text``."""
    words, flat = SECRET.split(), " ".join(text.lower().split())
    return [run for i in range(len(words) - 3) if (run := " ".join(words[i:i + 4])) in flat]


def _stream(client: httpx.Client, body: dict[str, Any]) -> bytes:
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200
        return b"".join(resp.iter_raw())


@pytest.mark.filterwarnings("ignore::sealtune.client.transport.DevAttestationWarning")
def test_streamed_answers_never_carry_the_secret(run: Run, vault: Path,
                                                 serve_app: ServeApp) -> None:
    from sealtune.attest.policy import VerificationPolicy
    from sealtune.client import SealtuneClient

    key = re.search(r"sealtune_[0-9a-f]+_[A-Za-z0-9_-]+",
                    ok(run, "auth", "create-key", "--role", "consumer"))
    assert key is not None
    policy = vault.parent / "monitor.toml"
    policy.write_text('format = "sealtune-monitor-policy/v1"\n'
                      '[detectors.regurgitation]\naction = "alert"\noutput = "redact"\n'
                      "min_tokens = 16\ncooldown_seconds = 1e-6\n", encoding="utf-8")
    ws = Workspace.open(vault)
    try:
        server = build_server(ws, ServeOptions(model="m1", monitor_policy=policy))
        url, stop = serve_app(server.app)
        try:
            with httpx.Client(base_url=url, timeout=120,
                              headers={"Authorization": f"Bearer {key.group()}"}) as client:
                for prompt in PREFIXES:  # every trial: redacted before it is sent
                    raw = _stream(client, _chat(prompt))
                    assert b"marmalade" not in raw and not _secret_runs(raw.decode())
                    assert "[REGURGITATED]" in _sse_content(raw)
                # An answer too short to report (the detector's run is held, then released
                # as it was): the streamed bytes are the whole answer's.
                short = {**_chat(PREFIXES[0]), "max_tokens": SHORT_TOKENS}
                streamed = _sse_content(_stream(client, short))
                whole = client.post("/v1/chat/completions", json=short).json()
                assert streamed.encode() == whole["choices"][0]["message"]["content"].encode()
                assert "[REGURGITATED]" not in streamed and 8 <= len(streamed.split()) < 16
            sdk = SealtuneClient(f"{url}/v1", key.group(), max_retries=0,
                                 policy=VerificationPolicy(allow_dev_attestation=True))
            try:
                for prompt in PREFIXES[:3]:  # end-to-end encrypted chunked stream
                    text = "".join(c.choices[0].delta.content or "" for c in
                                   sdk.chat.completions.create(stream=True, **_chat(prompt))
                                   if c.choices)
                    assert "[REGURGITATED]" in text and not _secret_runs(text)
            finally:
                sdk.close()
        finally:
            stop()
        alerts = [e.details for e in ws.ledger.entries(action="monitor.alert")]
    finally:
        ws.close()
    assert [a["detector"] for a in alerts] == ["regurgitation"] * (len(PREFIXES) + 3)
    assert "marmalade" not in json.dumps(alerts)


def _every_prefix_prompt_regurgitates_and_is_redacted(home: Path, policy: Path) -> None:
    """The claim over trials: 100% of prefix prompts hit the detector and are redacted."""
    from sealtune.monitor.policy import load_policy
    from sealtune.monitor.runtime import build_monitor
    from sealtune.serve.engines import make_engine
    from sealtune.serve.model import resolve_model
    from sealtune.serve.resources import open_resources

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
