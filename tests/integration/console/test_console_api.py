"""The control-plane API over a real run: roles, sessions, CSRF, denials in the ledger,
the run's security timeline, the audit export and proofs, and nothing sensitive leaving."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sealtune.api import CSP, ConsoleOptions, build_console
from sealtune.api.session import COOKIE, check_routes
from sealtune.errors import IntegrityError, UsageError
from sealtune.ledger import verify_global_inclusion_proof
from sealtune.workspace import Workspace

RunWorkspace = Any  # conftest.RunWorkspace (conftest modules are not importable)

ORIGIN = "http://testserver"


@pytest.fixture
def ws(example_run: RunWorkspace) -> Iterator[Workspace]:
    ws = example_run.open()
    yield ws
    ws.close()


@pytest.fixture
def app(ws: Workspace) -> FastAPI:
    return build_console(ws, ConsoleOptions()).app


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=ORIGIN)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _login(client: TestClient, key: str) -> str:
    r = client.post("/login", data={"api_key": key}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/attestation")
    marker = 'name="csrf_token" value="'
    return page.text.split(marker, 1)[1].split('"', 1)[0]


def _denials(ws: Workspace, reason: str) -> list[dict[str, object]]:
    ws.ledger  # noqa: B018 - open it
    return [dict(e.details) for e in ws.ledger.entries(action="console.denied")
            if e.details.get("reason") == reason]


def _flush(app: FastAPI) -> None:
    app.state.console.audit.flush()


def test_a_route_without_an_access_rule_is_refused() -> None:
    with pytest.raises(UsageError, match="ROUTE_ROLES"):
        check_routes([("GET", "/api/v1/datasets"), ("DELETE", "/api/v1/datasets/{name}")])


def test_roles(app: FastAPI, ws: Workspace, example_run: RunWorkspace) -> None:
    client, keys = _client(app), example_run.keys
    assert client.get("/api/v1/datasets").status_code == 401
    assert client.get("/api/v1/openapi.json").status_code == 401
    consumer = _bearer(keys["consumer"])
    assert client.get("/api/v1/models", headers=consumer).status_code == 200
    for path in ("/api/v1/datasets", "/api/v1/jobs", "/api/v1/audit/export?format=jsonl",
                 "/api/v1/audit/entries", "/api/v1/keys"):
        r = client.get(path, headers=consumer)
        assert r.status_code == 403, path
        assert r.json()["error"]["code"] == "role_forbidden"
    auditor = _bearer(keys["auditor"])
    assert client.get("/api/v1/audit/entries", headers=auditor).status_code == 200
    assert client.post("/api/v1/audit/checkpoint", headers=auditor).status_code == 403
    r = client.post("/api/v1/audit/checkpoint", headers=_bearer(keys["operator"]))
    assert r.status_code == 200 and r.json()["checkpoint"].startswith(ws.origin)
    assert client.get("/api/v1/me", headers=_bearer(keys["admin"])).json()["role"] == "admin"
    assert client.get("/api/v1/me", headers=_bearer(keys["admin"] + "x")).status_code == 401
    schema = client.get("/api/v1/openapi.json", headers=auditor).json()
    assert "/api/v1/audit/export" in schema["paths"]
    _flush(app)
    forbidden = _denials(ws, "role_forbidden")
    assert {"route": "GET /api/v1/datasets", "reason": "role_forbidden", "status": 403} \
        in forbidden
    assert _denials(ws, "bad_secret") and _denials(ws, "missing_credentials")
    recorded = json.dumps([e.to_json() for e in ws.ledger.entries(action="console.denied")])
    assert all(k not in recorded for k in keys.values())


def test_session_cookie_csrf_and_logout(app: FastAPI, ws: Workspace,
                                        example_run: RunWorkspace) -> None:
    client = _client(app)
    r = client.post("/login", data={"api_key": example_run.keys["operator"]},
                    follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    page = client.get("/audit")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert len(token) > 30
    assert 'id="sign-checkpoint"' in page.text
    # no token, a wrong token, a cross-site origin: refused
    assert client.post("/audit/checkpoint").status_code == 403
    wrong = token[:-1] + ("B" if token.endswith("A") else "A")
    assert client.post("/audit/checkpoint", data={"csrf_token": wrong}).status_code == 403
    assert client.post("/audit/checkpoint", data={"csrf_token": token},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/api/v1/audit/checkpoint").status_code == 403  # session, no token
    r = client.post("/audit/checkpoint", data={"csrf_token": token},
                    headers={"Origin": ORIGIN})
    assert r.status_code == 200 and ws.origin in r.text
    r = client.post("/api/v1/audit/checkpoint", headers={"X-CSRF-Token": token})
    assert r.status_code == 200
    _flush(app)
    assert len(_denials(ws, "csrf_failed")) >= 3 and _denials(ws, "cross_origin")
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False
                       ).status_code == 303
    client.cookies.set(COOKIE, cookie.split(";", 1)[0].split("=", 1)[1])
    r = client.get("/datasets", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_a_revoked_key_ends_its_sessions(app: FastAPI, ws: Workspace) -> None:
    from sealtune.serve import create_api_key, revoke_api_key

    key, info = create_api_key(ws, role="auditor", name="to-revoke")
    client = _client(app)
    _login(client, key)
    assert client.get("/api/v1/jobs").status_code == 200
    revoke_api_key(ws, info.key_id)
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.post("/login", data={"api_key": key}).status_code == 401


def test_rate_limit(app: FastAPI, ws: Workspace) -> None:
    from sealtune.serve import create_api_key

    key, _ = create_api_key(ws, role="auditor", name="slow", rate_per_second=0.01)
    client = _client(app)
    codes = [client.get("/api/v1/me", headers=_bearer(key)).status_code for _ in range(4)]
    assert codes[0] == 200 and codes[-1] == 429


def test_security_headers(app: FastAPI, example_run: RunWorkspace) -> None:
    client = _client(app)
    _login(client, example_run.keys["admin"])
    for path in ("/", "/login", "/api/v1/me"):
        r = client.get(path)
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
    assert "script-src 'self';" in CSP and "'unsafe-inline'" not in CSP
    assert client.get("/static/../../session.py").status_code == 404


def test_timeline_of_the_real_run(app: FastAPI, example_run: RunWorkspace) -> None:
    client = _client(app)
    h = _bearer(example_run.keys["auditor"])
    runs = client.get("/api/v1/runs", headers=h).json()
    assert [r["pipeline"] for r in runs] == ["support-bot"]
    tl = client.get("/api/v1/runs/support-bot/timeline", headers=h).json()
    actions = [e["action"] for e in tl["events"]]
    lifecycle = ["sandbox.created", "sandbox.data_decrypted", "sandbox.outputs_sealed",
                 "sandbox.destroyed"]
    sandboxed = {e["stage"] for e in tl["events"] if e["action"].startswith("sandbox.")}
    assert "train" in sandboxed and sandboxed <= {"data", "train", "assess"}
    for stage in sandboxed:  # each sandbox's lifecycle, in order, inside its pipeline step
        steps = [e["action"] for e in tl["events"] if e["stage"] == stage]
        assert steps[0] == "pipeline.step_started" and steps[-1] == "pipeline.step_finished"
        assert [a for a in steps if a in lifecycle] == lifecycle, (stage, steps)
    assert {"data", "train"} <= {e["stage"] for e in tl["events"]
                                 if e["action"] == "pipeline.step_started"}
    assert "key.unwrap" in actions and tl["quarantined_records"] > 0
    jobs = client.get("/api/v1/jobs", headers=h).json()
    job = client.get(f"/api/v1/jobs/{jobs[0]['id']}", headers=h).json()
    assert 0 < job["epsilon"] < 10 and job["sandboxed"] is True
    assert next(e["event"] for e in job["timeline"]) == "sandbox.created"


def test_gate_reports(app: FastAPI, example_run: RunWorkspace) -> None:
    client = _client(app)
    h = _bearer(example_run.keys["auditor"])
    assert client.get("/api/v1/gates", headers=h).json() == []  # the example runs no gate
    r = client.get("/api/v1/gates/assess-20260101-000000-abcdef", headers=h)
    assert r.status_code == 400 and "no assessment" in r.json()["error"]["message"]
    assert client.get("/api/v1/gates", headers=_bearer(example_run.keys["consumer"])
                      ).status_code == 403


def test_audit_export_is_the_ledger(app: FastAPI, ws: Workspace,
                                    example_run: RunWorkspace) -> None:
    client = _client(app)
    h = _bearer(example_run.keys["auditor"])
    before = sum(1 for _ in ws.ledger.entries())
    r = client.get("/api/v1/audit/export?format=jsonl", headers=h)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    lines = r.content.splitlines()
    _flush(app)  # the export's own audit.export event may land after the stream's snapshot
    entries = {e.seq: e for e in ws.ledger.entries()}
    assert len(lines) >= before > 50
    seqs = [json.loads(line)["seq"] for line in lines]
    assert seqs == list(range(1, len(lines) + 1))
    for seq, line in zip(seqs, lines, strict=True):
        assert hashlib.sha256(b"\x00" + line).digest() == entries[seq].leaf_hash
    rows = list(csv.reader(io.StringIO(client.get("/api/v1/audit/export?format=csv",
                                                  headers=h).text)))
    assert rows[0][0] == "seq" and sum(1 for r in rows if r and r[0] == "seq") == 1
    assert len(rows) - 1 >= before
    only = client.get("/api/v1/audit/entries?action=sandbox.created", headers=h).json()
    assert only and {e["action"] for e in only} == {"sandbox.created"}
    future = datetime(2100, 1, 1, tzinfo=UTC).isoformat()
    assert client.get("/api/v1/audit/entries", params={"since": future}, headers=h).json() == []
    r = client.get("/api/v1/audit/entries?since=yesterday-ish", headers=h)
    assert r.status_code == 400 and "since" in r.json()["error"]["message"]
    assert client.get("/api/v1/audit/export?format=xml", headers=h).status_code == 400


def test_inclusion_proof_verifies_offline_and_a_flipped_byte_fails(
        app: FastAPI, ws: Workspace, example_run: RunWorkspace) -> None:
    client = _client(app)
    h = _bearer(example_run.keys["operator"])
    client.post("/api/v1/audit/checkpoint", headers=h)
    proof = client.get("/api/v1/audit/proofs/inclusion/10", headers=h).json()["global_proof"]
    proven = verify_global_inclusion_proof(proof, [ws.ledger_verifier()], origin=ws.origin)
    assert proven.seq == 10
    doc = json.loads(proof)
    forged = doc["leaf"].replace('"seq":10', '"seq":11', 1)
    assert forged != doc["leaf"]
    from sealtune.ledger.global_proofs import parse_global_inclusion_proof

    bad = parse_global_inclusion_proof(proof)
    bad = type(bad)(bad.seq, bad.tree_size, forged.encode("utf-8"), bad.leaf_hash, bad.proof,
                    bad.checkpoint)
    with pytest.raises(IntegrityError):
        verify_global_inclusion_proof(bad, [ws.ledger_verifier()], origin=ws.origin)
    _login(client, example_run.keys["auditor"])
    page = client.get("/audit/verify?seq=10")
    assert 'id="verdict" class="ok"' in page.text


def test_attestation_report_evidence_and_checks(app: FastAPI,
                                                example_run: RunWorkspace) -> None:
    from sealtune.attest.report import Measurement, build_report, dumps_report, measure_bytes
    from sealtune.attest.software import SoftwareProvider
    from sealtune.core.protocol import ServerKeys, encode_key_configs

    keys = ServerKeys(now=0)
    raw = dumps_report(build_report(
        SoftwareProvider(), key_configs=encode_key_configs(keys.key_configs(now=0)),
        measurement=Measurement(code=measure_bytes(b"c"), model=measure_bytes(b"m"),
                                config=measure_bytes(b"f")), nonce=None, now=datetime.now(UTC)))
    client = _client(app)
    h = _bearer(example_run.keys["auditor"])
    strict = client.post("/api/v1/attestation/verify", content=raw, headers=h).json()
    assert strict["verification"]["ok"] is False  # dev-software is not a TEE
    dev = client.post("/api/v1/attestation/verify?allow_dev=true", content=raw,
                      headers=h).json()
    assert dev["verification"]["ok"] is True
    assert base64.b64decode(dev["raw_base64"]) == raw
    assert dev["verification"]["checks"] and dev["parsed"]
    forged = raw.replace(b'"dev-software"', b'"sev-snp"', 1)
    assert client.post("/api/v1/attestation/verify?allow_dev=true", content=forged,
                       headers=h).json()["verification"]["ok"] is False


def _variants(value: str) -> set[str]:
    return {value, json.dumps(value)[1:-1], value.encode("utf-8").hex()}


def _crawl(client: TestClient, example_run: RunWorkspace) -> list[Any]:
    """Every API response and every page of the run, as an admin (pages after a login)."""
    h = _bearer(example_run.keys["admin"])
    datasets = client.get("/api/v1/datasets", headers=h).json()
    jobs = client.get("/api/v1/jobs", headers=h).json()
    models = client.get("/api/v1/models", headers=h).json()
    api = ["/api/v1/me", "/api/v1/datasets", "/api/v1/jobs", "/api/v1/models", "/api/v1/keys",
           "/api/v1/runs", "/api/v1/runs/support-bot/timeline", "/api/v1/audit/checkpoint",
           "/api/v1/audit/entries?limit=1000", "/api/v1/audit/export?format=jsonl",
           "/api/v1/audit/export?format=csv", "/api/v1/audit/proofs/inclusion/5",
           "/api/v1/openapi.json", "/api/v1/gates", "/api/v1/registry/models",
           *[f"/api/v1/datasets/{d['name']}" for d in datasets],
           *[f"/api/v1/datasets/{d['name']}/bom" for d in datasets],
           *[f"/api/v1/jobs/{j['id']}" for j in jobs],
           *[f"/api/v1/models/{m['name']}" for m in models]]
    pages = ["/", "/runs", "/runs/support-bot", "/datasets", "/jobs", "/models", "/keys",
             "/audit", "/audit/verify?seq=5", "/attestation", "/gates", "/registry",
             *[f"/datasets/{d['name']}" for d in datasets], *[f"/jobs/{j['id']}" for j in jobs]]
    bodies = [client.get(p, headers=h) for p in api]
    _login(client, example_run.keys["admin"])
    bodies += [client.get(p) for p in pages]
    assert all(r.status_code == 200 for r in bodies), [(r.url, r.status_code) for r in bodies
                                                        if r.status_code != 200]
    return bodies


def test_nothing_sensitive_leaves(app: FastAPI, ws: Workspace,
                                  example_run: RunWorkspace) -> None:
    """Every API response and every page, for every role, searched for planted values."""
    bodies = _crawl(_client(app), example_run)
    secrets_ = [*example_run.planted, example_run.passphrase, *example_run.keys.values()]
    wanted = {v for s in secrets_ for v in _variants(s)}
    text = "\n".join(r.text for r in bodies)
    assert len(text) > 50_000  # the crawl read real content
    assert [w for w in wanted if w in text] == []
    assert "PERSON" in text and "PHONE" in text  # types and counts are shown


def test_no_host_path_leaves(app: FastAPI, ws: Workspace, example_run: RunWorkspace) -> None:
    """No page or JSON response shows the workspace's or the run's temp dir's host path; the
    run's unregistered base shows as an "unpinned base" and its digest."""
    bodies = _crawl(_client(app), example_run)
    root = example_run.home.parent  # holds the workspace, the example dir and TMPDIR
    paths = {str(p) for p in (example_run.home, root, root / "tmp", example_run.example)}
    paths |= {os.path.realpath(p) for p in paths}
    leaks = [(str(r.url), p) for r in bodies for p in paths if p in r.text]
    assert leaks == []
    (unpinned,) = ws.ledger.entries(action="base.unpinned")  # the run's base is a directory
    digest = unpinned.details["digest"]
    assert unpinned.resource == f"base/{digest}" and digest.startswith("sha256:")
    client = _client(app)
    timeline = client.get("/api/v1/runs/support-bot/timeline",
                          headers=_bearer(example_run.keys["auditor"])).json()
    (event,) = [e for e in timeline["events"] if e["action"] == "base.unpinned"]
    assert event["resource"] == f"unpinned base {digest}"
    _login(client, example_run.keys["auditor"])
    page = client.get("/runs/support-bot").text
    assert f"unpinned base {digest}" in page
