"""The model registry through the control plane, over a real workspace: a real run's model
registered as ``bot@v1..v3`` (``dev`` promoted to v1 then v2). Each test works on its own copy.

Reads for every role; promote refused without a passing gate report (409, ``gate:``, nothing
changed); rollback; revoke; roles refused by the registry's own table (a consumer, an
operator promoting to or rolling back prod), each a ``console.denied`` event; CSRF refused for
sessions; the page offers each role only its stages; the registry authorises and records the
caller's API key id (not the console process's actor).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sealtune.api import ConsoleOptions, build_console
from sealtune.registry import list_models, show_model
from sealtune.workspace import Workspace

RunWorkspace = Any  # conftest.RunWorkspace (conftest modules are not importable)
ORIGIN = "http://testserver"
API = "/api/v1/registry/models"


@pytest.fixture
def ws(registry_run: RunWorkspace, tmp_path: Path) -> Iterator[Workspace]:
    home = tmp_path / "ws"
    shutil.copytree(registry_run.home, home, symlinks=True)
    ws = Workspace.open(home, passphrase=registry_run.passphrase)
    yield ws
    ws.close()


@pytest.fixture
def app(ws: Workspace) -> FastAPI:
    return build_console(ws, ConsoleOptions()).app


@pytest.fixture
def keys(registry_run: RunWorkspace) -> dict[str, dict[str, str]]:
    return {role: {"Authorization": f"Bearer {k}"} for role, k in registry_run.keys.items()}


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=ORIGIN)


def _denials(app: FastAPI, ws: Workspace) -> list[dict[str, Any]]:
    app.state.console.audit.flush()
    return [{"actor": e.actor, **e.details} for e in ws.ledger.entries(action="console.denied")]


def _state(ws: Workspace) -> list[tuple[str, list[str], bool]]:
    return [(v["ref"], v["stages"], bool(v["revoked"])) for v in list_models(ws)]


def test_list_and_show_for_every_role(app: FastAPI, ws: Workspace,
                                      keys: dict[str, dict[str, str]]) -> None:
    client = _client(app)
    for role in ("admin", "operator", "auditor", "consumer"):
        r = client.get(API, headers=keys[role])
        assert r.status_code == 200, (role, r.text)
    (bot,) = [m for m in r.json()["models"] if m["name"] == "bot"]
    assert [(v["ref"], v["stages"], v["revoked"]) for v in bot["versions"]] == [
        ("bot@v1", [], None), ("bot@v2", ["dev"], None), ("bot@v3", [], None)]
    assert all(v["signature"] == show_model(ws, v["ref"])["signature"] for v in bot["versions"])
    shown = client.get(f"{API}/bot", headers=keys["consumer"]).json()
    assert shown["stages"] == {"dev": 2}
    v1 = shown["versions"][0]
    assert v1["model_digest"].startswith("sha256:")
    assert v1["record"] == show_model(ws, "bot@v1")["record"]  # provenance, as signed
    assert [h["action"] for h in shown["history"]].count("registry.promote") == 2
    r = client.get(f"{API}/nosuch", headers=keys["admin"])
    assert r.status_code == 400 and "nosuch" in r.json()["error"]["message"]


def test_promote_without_a_gate_report_is_refused_and_changes_nothing(
        app: FastAPI, ws: Workspace, keys: dict[str, dict[str, str]]) -> None:
    before = _state(ws)
    r = _client(app).post(f"{API}/bot/versions/3/promote", json={"stage": "staging"},
                          headers=keys["operator"])
    assert r.status_code == 409, r.text
    assert r.json()["error"]["message"].startswith("gate: bot@v3 has no passing")
    assert r.json()["error"]["type"] == "GateFailed"
    assert "unsafe" not in r.text
    assert _state(ws) == before
    assert not list(ws.ledger.entries(action="registry.unsafe_skip_gate"))[2:]


def test_rollback_and_revoke(app: FastAPI, ws: Workspace,
                             keys: dict[str, dict[str, str]]) -> None:
    client = _client(app)
    r = client.post(f"{API}/bot/rollback", json={"stage": "dev"}, headers=keys["operator"])
    assert r.status_code == 200 and r.json() == {"ref": "bot@v1"}
    assert show_model(ws, "bot")["stages"] == {"dev": 1}
    r = client.post(f"{API}/bot/versions/1/revoke", json={"reason": "leaks a ticket id"},
                    headers=keys["admin"])
    assert r.status_code == 200 and r.json() == {"ref": "bot@v1"}
    views = {v["ref"]: v for v in list_models(ws)}
    assert views["bot@v1"]["revoked"]["reason"] == "leaks a ticket id"
    # the alias on a revoked version moves to the newest other promoted one (v2)
    assert show_model(ws, "bot")["stages"] == {"dev": 2}
    r = client.post(f"{API}/bot/versions/1/revoke", json={"reason": "again"},
                    headers=keys["admin"])
    assert r.status_code == 400 and "already revoked" in r.json()["error"]["message"]
    r = client.post(f"{API}/bot/versions/2/revoke", json={"reason": " "},
                    headers=keys["admin"])
    assert r.status_code == 400 and not views["bot@v2"]["revoked"]
    app.state.console.audit.flush()
    done = [(e.actor, e.details["action"], e.resource)
            for e in ws.ledger.entries(action="console.registry")]
    assert [d[1:] for d in done] == [("rollback", "bot@dev"), ("revoke", "bot@v1")]
    assert ws.ledger.entries(action="registry.revoke")


def test_roles_are_the_registrys_and_each_denial_is_recorded(
        app: FastAPI, ws: Workspace, keys: dict[str, dict[str, str]],
        registry_run: RunWorkspace) -> None:
    client, before = _client(app), _state(ws)
    for role in ("consumer", "auditor"):
        for path, body in ((f"{API}/bot/versions/3/promote", {"stage": "dev"}),
                           (f"{API}/bot/rollback", {"stage": "dev"}),
                           (f"{API}/bot/versions/3/revoke", {"reason": "x"})):
            r = client.post(path, json=body, headers=keys[role])
            assert r.status_code == 403 and r.json()["error"]["code"] == "role_forbidden"
    # the registry's table: promote to prod is admin only
    r = client.post(f"{API}/bot/versions/2/promote", json={"stage": "prod"},
                    headers=keys["operator"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "registry_role"
    assert _state(ws) == before
    denied = _denials(app, ws)
    assert sum(d["reason"] == "role_forbidden" and "/registry/" in d["route"]
               for d in denied) == 6
    assert {"reason": "registry_role", "status": 403,
            "route": "POST /api/v1/registry/models/{name}/versions/{n}/promote"} in [
        {k: d[k] for k in ("reason", "status", "route")} for d in denied]
    # an admin passes the role checks and meets the gate
    r = client.post(f"{API}/bot/versions/2/promote", json={"stage": "prod"},
                    headers=keys["admin"])
    assert r.status_code == 409 and r.json()["error"]["message"].startswith("gate:")


def test_csrf_refused_for_sessions(app: FastAPI, ws: Workspace,
                                   registry_run: RunWorkspace) -> None:
    client, before = _client(app), _state(ws)
    r = client.post("/login", data={"api_key": registry_run.keys["admin"]},
                    follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/registry")
    assert page.status_code == 200 and 'class="revoke"' in page.text
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post(f"{API}/bot/rollback", json={"stage": "dev"}).status_code == 403
    assert client.post("/registry/bot/rollback", data={"stage": "dev"}).status_code == 403
    assert client.post("/registry/bot/rollback", data={"stage": "dev", "csrf_token": token},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert _state(ws) == before
    assert {d["reason"] for d in _denials(app, ws) if "/registry/" in d["route"]} == {
        "csrf_failed", "cross_origin"}
    r = client.post("/registry/bot/rollback", data={"stage": "dev", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and show_model(ws, "bot")["stages"] == {"dev": 1}
    r = client.post("/registry/bot/versions/3/promote",
                    data={"stage": "dev", "csrf_token": token})
    assert r.status_code == 409 and "gate: bot@v3" in r.text


def _options(html: str, action: str) -> list[list[str]]:
    """The stage options of each form whose action ends with ``action``."""
    found = []
    for form in html.split("<form")[1:]:
        head, _, rest = form.partition(">")
        if head.split('action="', 1)[1].split('"', 1)[0].endswith(action):
            found.append([o.split('"', 1)[0] for o in rest.split("</form>")[0]
                          .split('<option value="')[1:]])
    return found


def test_the_page_offers_each_role_only_the_stages_it_may_act_on(
        app: FastAPI, ws: Workspace, registry_run: RunWorkspace,
        keys: dict[str, dict[str, str]]) -> None:
    offered = {}
    for role in ("admin", "operator"):
        client = _client(app)
        assert client.post("/login", data={"api_key": registry_run.keys[role]},
                           follow_redirects=False).status_code == 303
        html = client.get("/registry").text
        offered[role] = (_options(html, "/promote"), _options(html, "/rollback"))
    assert offered["admin"] == ([["dev", "staging", "prod"]] * 3, [["dev", "staging", "prod"]])
    assert offered["operator"] == ([["dev", "staging"]] * 3, [["dev", "staging"]])
    # the API refuses an operator's rollback of prod anyway (the registry's table), recorded
    before, denied = _state(ws), len(_denials(app, ws))
    r = _client(app).post(f"{API}/bot/rollback", json={"stage": "prod"},
                          headers=keys["operator"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "registry_role"
    assert "rollback of bot@prod" in r.json()["error"]["message"]
    assert _state(ws) == before
    assert [(d["reason"], d["route"]) for d in _denials(app, ws)[denied:]] == [
        ("registry_role", "POST /api/v1/registry/models/{name}/rollback")]


def test_the_registry_itself_refuses_an_operators_rollback_of_prod(
        ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    from sealtune.errors import PolicyViolation
    from sealtune.registry import grant, promote, rollback

    monkeypatch.setenv("SEALTUNE_ACTOR", "alice")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        promote(ws, "bot@v1", stage="prod", unsafe_skip_gate=True)
        promote(ws, "bot@v2", stage="prod", unsafe_skip_gate=True)
    grant(ws, "olga", "operator")
    monkeypatch.setenv("SEALTUNE_ACTOR", "olga")
    with pytest.raises(PolicyViolation, match="rollback:prod of bot@prod"):
        rollback(ws, "bot", stage="prod")
    assert show_model(ws, "bot")["stages"]["prod"] == 2
    assert rollback(ws, "bot", stage="dev").version == 1  # dev stays an operator's
    monkeypatch.setenv("SEALTUNE_ACTOR", "alice")
    assert rollback(ws, "bot", stage="prod").version == 1
    assert [(e.actor, e.details["action"]) for e in ws.ledger.entries(
        action="registry.denied")] == [("olga", "rollback:prod")]


def test_registry_changes_are_authorised_and_recorded_as_the_callers_key(
        app: FastAPI, ws: Workspace, keys: dict[str, dict[str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two keys of different roles: the registry checks each key id's own grant (not the
    console process's actor) and its ledger events name the key that acted."""
    from sealtune.registry import grant

    client = _client(app)
    ids = {role: client.get("/api/v1/me", headers=keys[role]).json()["key_id"]
           for role in ("admin", "operator")}
    monkeypatch.setenv("SEALTUNE_ACTOR", "console-host")  # the console process's actor
    grant(ws, ids["operator"], "operator")  # the first grant: console-host stays admin
    grant(ws, ids["admin"], "admin")
    r = client.post(f"{API}/bot/rollback", json={"stage": "dev"}, headers=keys["operator"])
    assert r.status_code == 200 and r.json() == {"ref": "bot@v1"}
    r = client.post(f"{API}/bot/versions/3/revoke", json={"reason": "test"},
                    headers=keys["admin"])
    assert r.status_code == 200 and r.json() == {"ref": "bot@v3"}
    assert [e.actor for e in ws.ledger.entries(action="registry.rollback")] == [ids["operator"]]
    assert [e.actor for e in ws.ledger.entries(action="registry.revoke")] == [ids["admin"]]
    assert {v["ref"]: v["revoked"] for v in list_models(ws)}["bot@v3"]["by"] == ids["admin"]
    # the key's grant binds it, whatever the process actor may do: an admin key whose
    # registry grant is consumer is refused by the registry (registry.denied names the key)
    grant(ws, ids["admin"], "consumer")
    before = _state(ws)
    r = client.post(f"{API}/bot/versions/2/revoke", json={"reason": "test"},
                    headers=keys["admin"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "registry_policy"
    assert "role consumer" in r.json()["error"]["message"]
    assert _state(ws) == before
    assert [e.actor for e in ws.ledger.entries(action="registry.denied")] == [ids["admin"]]
    app.state.console.audit.flush()
    done = [(e.actor, e.details["action"]) for e in ws.ledger.entries(
        action="console.registry")]
    assert done == [(ids["operator"], "rollback"), (ids["admin"], "revoke")]
    assert "console-host" not in {e.actor for e in ws.ledger.entries()
                                  if e.action.startswith("registry.")
                                  and e.action != "registry.grant"}
