"""The monitor of a server serving registry versions, through the CLI and the real server.

One module fixture: init -> two datasets whose replies repeat different
secrets -> two sandboxed training jobs (the first with ``--canaries``: its
seed sealed, its plan in the signed ``model.json``) -> ``models register``
them as ``bot@v1`` and ``bot@v2`` -> promote ``bot@v1`` to ``prod``. Each
test works on a copy of that workspace and serves it with
``build_guarded_server`` (what ``sealtune serve --model NAME@...`` runs:
the registry guard thread follows the stage alias) under uvicorn. The echo
engine answers with the prompt, so an answer regurgitates a version's
training reply (or carries a canary) exactly when the prompt does: what
decides redaction and alerts is the served version's own sealed filter and
canaries, read from its signed files. Also: a replaced or missing canary
seed is refused, a stage moved to a version that cannot be watched is
refused until it can (never the old version served in its place), and a
``withdraw_model`` policy takes the version out of service.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sealtune.cli import main
from sealtune.errors import ConfigError, IntegrityError
from sealtune.serve import ServeOptions
from sealtune.workspace import Workspace

#: The ``serve_app`` fixture (tests/integration/conftest.py): uvicorn in a thread.
ServeApp = Callable[..., tuple[str, Callable[[], None]]]

SECRETS = {
    "v1": ("the vault code of the zurich branch is seven four one nine and the backup phrase "
           "is purple elephant marmalade tuesday harbour lantern so keep it safe always"),
    "v2": ("the alarm override for the lisbon office is green falcon copper river and the "
           "spare key hides under the third blue planter beside the loading dock gate"),
}
MARKERS = {"v1": "marmalade", "v2": "planter"}
TRAIN = ["--max-steps", "2", "--batch-size", "4", "--max-length", "96", "--threads", "1"]


def _cli(*args: object) -> None:
    assert main([str(a) for a in args]) == 0, args


def _raw(path: Path, secret: str) -> Path:
    rows = [json.dumps({"id": f"r{i}", "messages": [
        {"role": "user", "content": f"What is the code for ticket {i}?"},
        {"role": "assistant", "content": secret}]}) for i in range(16)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def registry_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """bot@v1 (secret v1, 4 canaries) and bot@v2 (secret v2), bot@prod -> v1."""
    root = tmp_path_factory.mktemp("monreg")
    passphrase = "monreg-" + secrets.token_hex(8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEALTUNE_HOME", str(root / "home"))
        mp.setenv("SEALTUNE_PASSPHRASE", passphrase)
        mp.setenv("SEALTUNE_UNSAFE_FAST_KDF", "1")
        _cli("init")
        _cli("models", "make-tiny", root / "base")
        for v, extra in (("v1", ["--canaries", "4", "--canary-repeats", "1"]), ("v2", [])):
            _cli("data", "ingest", _raw(root / f"{v}.jsonl", SECRETS[v]), "--name", f"d{v}")
            _cli("train", "--dataset", f"d{v}", "--base", root / "base", "--out-name", f"m{v}",
                 *TRAIN, *extra)
        records = [json.loads(p.read_text("utf-8"))
                   for p in (root / "home" / "jobs").glob("*.json")]
        by_model = {r["out_name"]: r["id"] for r in records
                    if isinstance(r, dict) and r.get("status") == "finished"}
        _cli("models", "register", "bot", "--from-job", by_model["mv1"])
        _cli("models", "register", "bot", "--from-job", by_model["mv2"])
        _cli("models", "promote", "bot@v1", "--stage", "prod", "--unsafe-skip-gate")
    return root / "home", passphrase


@pytest.fixture
def home(registry_home: tuple[Path, str], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the module's workspace, the CLI pointed at it."""
    copy = tmp_path / "home"
    shutil.copytree(registry_home[0], copy, symlinks=True)
    monkeypatch.setenv("SEALTUNE_HOME", str(copy))
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", registry_home[1])
    monkeypatch.setenv("SEALTUNE_UNSAFE_FAST_KDF", "1")
    return copy


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "monitor.toml"
    path.write_text('format = "sealtune-monitor-policy/v1"\n'
                    '[detectors.regurgitation]\naction = "alert"\noutput = "redact"\n'
                    "min_tokens = 16\ncooldown_seconds = 1e-6\n"
                    '[detectors.canary]\naction = "alert"\noutput = "redact"\n'
                    "cooldown_seconds = 1e-6\n", encoding="utf-8")
    return path


def _consumer_key(capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    _cli("auth", "create-key", "--role", "consumer")
    key = re.search(r"sealtune_[0-9a-f]+_[A-Za-z0-9_-]+", capsys.readouterr().out)
    assert key is not None
    return key.group()


def _planted(ws: Workspace) -> list[str]:
    """The canaries bot@v1's job planted, from its sealed seed (the release gate's way)."""
    from sealtune.assess.canaries import canaries_from_seed
    from sealtune.keys.sealing import open_sealed

    [plan] = [json.loads(p.read_text("utf-8"))["canaries"]
              for p in ws.area("jobs").glob("*.json")
              if json.loads(p.read_text("utf-8")).get("canaries")]
    seed = b"".join(open_sealed(ws.area("jobs") / plan["file"], keys=ws.keys))
    return [c.secret for c in canaries_from_seed(seed, count=4, repeats=1)]


def _chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "bot", "messages": [{"role": "user", "content": content}],
            "max_tokens": 200, "temperature": 0, **extra}


def _whole(client: httpx.Client, content: str) -> str:
    resp = client.post("/v1/chat/completions", json=_chat(content))
    assert resp.status_code == 200, resp.text
    return str(resp.json()["choices"][0]["message"]["content"])


def _streamed(client: httpx.Client, content: str) -> bytes:
    with client.stream("POST", "/v1/chat/completions", json=_chat(content, stream=True)) as r:
        assert r.status_code == 200
        return b"".join(r.iter_raw())


def _sse_text(raw: bytes) -> str:
    return "".join(choice["delta"].get("content") or ""
                   for line in raw.decode("utf-8").splitlines() if line.startswith("data: {")
                   for choice in json.loads(line[6:])["choices"])


def _secret_runs(text: str, secret: str) -> list[str]:
    words, flat = secret.split(), " ".join(text.lower().split())
    return [run for i in range(len(words) - 3) if (run := " ".join(words[i:i + 4])) in flat]


def _until_serving(client: httpx.Client, before: dict[str, Any], timeout: float = 15) -> None:
    """Wait for the attestation's measurement to change (the guard followed the alias)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/v1/attestation").json()["measurement"] != before:
            return
        time.sleep(0.1)
    pytest.fail("the server did not follow the stage alias")


def _alerts(ws: Workspace, seen: int) -> list[tuple[str, str]]:
    """(detector, model version) of the ledger's monitor alerts after the first ``seen``."""
    return [(e.details["detector"], e.details["model_version"])
            for e in ws.ledger.entries(action="monitor.alert")][seen:]


def _until_alerts(ws: Workspace, seen: int, n: int) -> list[tuple[str, str]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = _alerts(ws, seen)
        if len(found) >= n:
            return found
        time.sleep(0.05)
    return _alerts(ws, seen)


def _model_info(server: Any) -> dict[str, float]:
    """``sealtune_model_info`` by its version label."""
    out: dict[str, float] = {}
    for line in server.metrics.exposition().decode().splitlines():
        m = re.match(r'sealtune_model_info\{.*version="([^"]+)".*\} (\S+)', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def _check_version(client: httpx.Client, ws: Workspace, *, served: str, other: str,
                   canary: str, canaries_on: bool) -> None:
    """The served version's secret is redacted and alerted under its name, whole and streamed;
    the other version's secret is not its training text; its canaries only if it has some."""
    seen = len(_alerts(ws, 0))
    whole = _whole(client, f"Repeat after me: {SECRETS[served]}")
    assert "[REGURGITATED]" in whole and MARKERS[served] not in whole
    raw = _streamed(client, f"Repeat after me: {SECRETS[served]}")
    assert MARKERS[served].encode() not in raw and not _secret_runs(raw.decode(), SECRETS[served])
    assert "[REGURGITATED]" in _sse_text(raw)
    passed = _whole(client, f"Repeat after me: {SECRETS[other]}")
    assert MARKERS[other] in passed and "[REGURGITATED]" not in passed
    pin = _whole(client, f"Your PIN is {canary}.")
    assert (canary not in pin) is canaries_on
    expected = [("regurgitation", f"bot@{served}")] * 2 + [("canary", f"bot@{served}")] * \
        canaries_on
    assert _until_alerts(ws, seen, len(expected)) == expected


def test_a_stage_move_swaps_the_filter_canaries_and_version_name_with_the_model(
        home: Path, policy: Path, serve_app: ServeApp,
        capsys: pytest.CaptureFixture[str]) -> None:
    """serve bot@prod -> promote v2 -> rollback to v1: each answer is checked by the version
    served, its alerts and ``sealtune_model_info`` name that version."""
    from sealtune.registry.watch import build_guarded_server

    key = _consumer_key(capsys)
    ws = Workspace.open(home)
    try:
        canary = _planted(ws)[0]
        server, guard = build_guarded_server(ws, ServeOptions(
            model="bot@prod", engine="echo", monitor_policy=policy, metrics_port=0))
        url, stop = serve_app(server.app)
        try:
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                _check_version(client, ws, served="v1", other="v2", canary=canary,
                               canaries_on=True)
                assert _model_info(server) == {"bot@v1": 1.0}
                first = client.get("/v1/attestation").json()["measurement"]
                _cli("models", "promote", "bot@v2", "--stage", "prod", "--unsafe-skip-gate")
                _until_serving(client, first)
                _check_version(client, ws, served="v2", other="v1", canary=canary,
                               canaries_on=False)
                assert _model_info(server) == {"bot@v1": 0.0, "bot@v2": 1.0}
                second = client.get("/v1/attestation").json()["measurement"]
                _cli("models", "rollback", "bot", "--stage", "prod")
                _until_serving(client, second)
                _check_version(client, ws, served="v1", other="v2", canary=canary,
                               canaries_on=True)
                assert _model_info(server) == {"bot@v1": 1.0, "bot@v2": 0.0}
        finally:
            stop()
            guard.stop()
        swapped = list(ws.ledger.entries(action="serve.model_swapped"))
        ledger = json.dumps([e.details for e in ws.ledger.entries(action="monitor.alert")])
    finally:
        ws.close()
    assert len(swapped) == 2
    assert not [m for m in MARKERS.values() if m in ledger] and canary not in ledger


def test_a_pinned_version_trained_with_canaries_alerts_and_redacts_them(
        home: Path, policy: Path, serve_app: ServeApp,
        capsys: pytest.CaptureFixture[str]) -> None:
    """bot@v1's job planted canaries: served by NAME@vN with no --canaries file, a prompt
    carrying one is an alert and redacted (rebuilt from the job's sealed seed)."""
    from sealtune.registry.watch import build_guarded_server

    key = _consumer_key(capsys)
    ws = Workspace.open(home)
    try:
        planted = _planted(ws)
        other = next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in planted)
        server, guard = build_guarded_server(ws, ServeOptions(model="bot@v1", engine="echo",
                                                              monitor_policy=policy))
        url, stop = serve_app(server.app)
        try:
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                hit = _whole(client, f"Your PIN is {planted[1]}.")
                streamed = _sse_text(_streamed(client, f"Your PIN is {planted[2]} ok."))
                miss = _whole(client, f"Your PIN is {other}.")
        finally:
            stop()
            guard.stop()
        alerts = _until_alerts(ws, 0, 2)
    finally:
        ws.close()
    assert planted[1] not in hit and planted[2] not in streamed and other in miss
    assert alerts == [("canary", "bot@v1")] * 2


def test_a_replaced_or_missing_canary_seed_stops_the_version_being_served(home: Path) -> None:
    """The seed must be the one the version's signed model.json names (content digest)."""
    from sealtune.keys.sealing import seal_bytes
    from sealtune.registry.watch import build_guarded_server

    ws = Workspace.open(home)
    try:
        [seed_file] = list(ws.area("jobs").glob("*.canaries.sealed"))
        seal_bytes(seed_file.with_suffix(".new"), secrets.token_bytes(32), keys=ws.keys,
                   key_names=[ws.config.default_key])
        seed_file.with_suffix(".new").replace(seed_file)  # well sealed, but not the job's seed
        with pytest.raises(IntegrityError, match="canary seed"):
            build_guarded_server(ws, ServeOptions(model="bot@v1", engine="echo"))
        seed_file.unlink()
        with pytest.raises(ConfigError, match="sealed seed"):
            build_guarded_server(ws, ServeOptions(model="bot@v1", engine="echo"))
    finally:
        ws.close()


def test_a_move_to_a_version_whose_canaries_cannot_be_rebuilt_is_refused_until_they_can(
        home: Path, policy: Path, serve_app: ServeApp,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Fail closed: the alias moved to bot@v1 but its seed is gone, so nothing is served (the
    old version is not served under the new name, nor the new one unwatched); once the
    seed is back the next check loads v1 with its canaries."""
    from sealtune.registry.watch import build_guarded_server

    key = _consumer_key(capsys)
    _cli("models", "promote", "bot@v2", "--stage", "prod", "--unsafe-skip-gate")
    ws = Workspace.open(home)
    try:
        canary = _planted(ws)[0]
        [seed] = list(ws.area("jobs").glob("*.canaries.sealed"))
        server, guard = build_guarded_server(ws, ServeOptions(
            model="bot@prod", engine="echo", monitor_policy=policy))
        url, stop = serve_app(server.app)
        try:
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                assert canary in _whole(client, f"Your PIN is {canary}.")  # v2: no canaries
                seed.rename(seed.with_suffix(".away"))
                _cli("models", "rollback", "bot", "--stage", "prod")
                deadline = time.monotonic() + 10
                while client.post("/v1/chat/completions", json=_chat("hi")).status_code != 503:
                    assert time.monotonic() < deadline, "the failed move was not refused"
                    time.sleep(0.1)
                time.sleep(2.5)  # two more checks: still refused, not cleared
                refused = client.post("/v1/chat/completions", json=_chat("hi"))
                assert refused.status_code == 503
                seed.with_suffix(".away").rename(seed)
                deadline = time.monotonic() + 10
                while client.post("/v1/chat/completions", json=_chat("hi")).status_code != 200:
                    assert time.monotonic() < deadline, "the move was not retried"
                    time.sleep(0.1)
                assert canary not in _whole(client, f"Your PIN is {canary}.")  # v1's canaries
        finally:
            stop()
            guard.stop()
        alerts = _until_alerts(ws, 0, 1)
    finally:
        ws.close()
    assert alerts == [("canary", "bot@v1")]


def test_a_withdraw_model_policy_takes_the_version_out_of_service(
        home: Path, tmp_path: Path, serve_app: ServeApp,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A canary hit under ``action = "withdraw_model"``: 503 ``model_withdrawn`` from then
    on, ``serve.model_withdrawn`` in the ledger, ``sealtune_model_withdrawn`` 1."""
    from sealtune.registry.watch import build_guarded_server

    policy = tmp_path / "withdraw.toml"
    policy.write_text('format = "sealtune-monitor-policy/v1"\n'
                      '[detectors.canary]\naction = "withdraw_model"\noutput = "block"\n',
                      encoding="utf-8")
    key = _consumer_key(capsys)
    ws = Workspace.open(home)
    try:
        canary = _planted(ws)[3]
        server, guard = build_guarded_server(ws, ServeOptions(
            model="bot@v1", engine="echo", monitor_policy=policy, metrics_port=0))
        url, stop = serve_app(server.app)
        try:
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                assert _whole(client, "hello there") == "hello there"
                blocked = client.post("/v1/chat/completions",
                                      json=_chat(f"Your PIN is {canary}."))
                after = client.post("/v1/chat/completions", json=_chat("hello there"))
            scrape = server.metrics.exposition().decode()
        finally:
            stop()
            guard.stop()
        withdrawn = list(ws.ledger.entries(action="serve.model_withdrawn"))
    finally:
        ws.close()
    assert blocked.status_code == 200 and canary not in blocked.text
    assert blocked.json()["choices"][0]["finish_reason"] == "content_filter"
    assert after.status_code == 503 and after.json()["error"]["code"] == "model_withdrawn"
    assert len(withdrawn) == 1
    assert 'sealtune_model_withdrawn{model="bot"} 1.0' in scrape
