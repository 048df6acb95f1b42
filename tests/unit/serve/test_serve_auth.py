"""Server authentication: hashed API keys, JWT checks, the role matrix on every route."""

from __future__ import annotations

import base64
import json
import secrets
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from sealtune.attest.software import SoftwareProvider
from sealtune.core.protocol import ServerKeys
from sealtune.errors import UsageError
from sealtune.serve import ServeSettings, create_app, route_keys
from sealtune.serve.auth import (
    PUBLIC,
    ROUTE_ROLES,
    Authenticator,
    Denied,
    RateLimit,
    RateLimiter,
    TokenService,
    check_route_matrix,
)
from sealtune.serve.engines import make_engine
from sealtune.serve.keystore import ROLES, KeyStore

NOW = datetime.now(UTC)
ISSUER = "sealtune/unit"


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "serve-keys.json")


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(secrets.token_bytes(32), issuer=ISSUER)


# -- API keys ---------------------------------------------------------------------------------


def test_api_keys_are_stored_as_salted_hashes(store: KeyStore) -> None:
    key, info = store.create(role="consumer", name="app one", now=NOW)
    key2, _ = store.create(role="consumer", now=NOW)
    secret = key.split("_", 2)[2]
    text = store.path.read_text()
    assert secret not in text and key not in text
    records = json.loads(text)["keys"]
    assert len({r["salt"] for r in records.values()}) == 2
    assert store.verify(key) == (info, "ok")
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B"))[1] == "bad_secret"
    assert store.verify("sealtune_0123456789abcdef_" + secret)[1] == "unknown_key"
    assert store.verify("not-a-key")[1] == "malformed_key"
    store.revoke(info.key_id, now=NOW)
    assert store.verify(key)[1] == "revoked_key"
    assert store.verify(key2)[1] == "ok"
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


def test_key_store_sees_changes_made_by_another_process(store: KeyStore) -> None:
    other = KeyStore(store.path)  # e.g. the CLI while the server runs
    assert store.list() == []
    key, info = other.create(role="auditor", now=NOW)
    assert store.verify(key) == (info, "ok")
    other.revoke(info.key_id, now=NOW)
    assert store.verify(key)[1] == "revoked_key"


def test_key_store_refuses_bad_input(store: KeyStore) -> None:
    with pytest.raises(UsageError):
        store.create(role="root", now=NOW)
    with pytest.raises(UsageError):
        store.create(role="consumer", name="bad\nname", now=NOW)
    with pytest.raises(UsageError):
        store.revoke("0" * 16, now=NOW)


# -- JWT --------------------------------------------------------------------------------------


def _auth(store: KeyStore, tokens: TokenService) -> Authenticator:
    return Authenticator(store, tokens)


def _reason(auth: Authenticator, credential: str) -> str:
    with pytest.raises(Denied) as caught:
        auth.authenticate(f"Bearer {credential}")
    assert caught.value.status == 401
    assert credential not in caught.value.message
    return caught.value.reason


def test_jwt_roundtrip_expiry_revocation(store: KeyStore, tokens: TokenService) -> None:
    _, info = store.create(role="operator", now=NOW)
    auth = _auth(store, tokens)
    issued = tokens.issue(info, now=NOW)
    principal = auth.authenticate(f"Bearer {issued.token}")
    assert (principal.caller, principal.role, principal.via) == (info.key_id, "operator", "jwt")
    assert issued.expires - int(NOW.timestamp()) == 3600  # default 1 h
    old = tokens.issue(info, ttl=timedelta(minutes=10), now=NOW - timedelta(hours=1))
    assert _reason(auth, old.token) == "expired_token"
    store.revoke_token(issued.jti, expires=issued.expires, now=time.time())
    assert _reason(auth, issued.token) == "revoked_token"
    fresh = tokens.issue(info, now=NOW)
    store.revoke(info.key_id, now=NOW)
    assert _reason(auth, fresh.token) == "revoked_key"
    revoked = store.get(info.key_id)
    assert revoked is not None and revoked.revoked
    with pytest.raises(UsageError):
        tokens.issue(revoked, now=NOW)
    _, info2 = store.create(role="consumer", now=NOW)
    with pytest.raises(UsageError):
        tokens.issue(info2, ttl=timedelta(hours=25), now=NOW)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(key_id: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": "sealtune-serve", "sub": key_id, "role": "admin",
            "iat": now, "nbf": now, "exp": now + 600, "jti": secrets.token_hex(16), **over}


def test_jwt_forgery_and_algorithm_confusion(store: KeyStore, tokens: TokenService) -> None:
    _, info = store.create(role="admin", now=NOW)
    auth = _auth(store, tokens)
    secret, kid = tokens.keys.signing.secret, {"kid": tokens.keys.signing.kid}
    claims = _claims(info.key_id)
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT", **kid}).encode())
    with warnings.catch_warnings():  # PyJWT warns that 32 bytes are short for SHA-512
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(claims, secret, algorithm="HS512", headers=kid)

    def hs256(body: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(body, secret, algorithm="HS256", headers={**kid, **headers})

    bad = {
        "other key": jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256", headers=kid),
        "alg none": f"{none_header}.{_b64(json.dumps(claims).encode())}.",
        "HS512": hs512,
        "EdDSA": jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA",
                            headers=kid),
        "embedded jwk": hs256(claims, jwk={"kty": "oct", "k": _b64(secret)}),
        "jku": hs256(claims, jku="https://attacker.example/keys"),
        "x5u": hs256(claims, x5u="https://attacker.example/cert"),
        "wrong aud": hs256({**claims, "aud": "someone-else"}),
        "wrong iss": hs256({**claims, "iss": "sealtune/other"}),
        "no jti": hs256({k: v for k, v in claims.items() if k != "jti"}),
        "no exp": hs256({k: v for k, v in claims.items() if k != "exp"}),
        "unknown role": hs256({**claims, "role": "root"}),
        "garbage": "a.b.c",
    }
    for name, token in bad.items():
        assert _reason(auth, token) == "invalid_token", name
    # a valid signature for a role the key does not have
    assert _reason(auth, hs256(_claims(info.key_id, role="consumer"))) == "revoked_key"
    assert auth.authenticate(f"Bearer {hs256(claims)}")


def test_api_key_only_server_refuses_tokens(store: KeyStore, tokens: TokenService) -> None:
    _, info = store.create(role="admin", now=NOW)
    auth = Authenticator(store, None)
    assert _reason(auth, tokens.issue(info, now=NOW).token) == "invalid_token"
    with pytest.raises(UsageError):
        TokenService(b"short", issuer=ISSUER)


def test_missing_or_odd_authorization_headers(store: KeyStore, tokens: TokenService) -> None:
    auth = _auth(store, tokens)
    for header in (None, "", "Bearer", "Bearer   ", "Basic abc", "Token sealtune_x"):
        with pytest.raises(Denied) as caught:
            auth.authenticate(header)
        assert caught.value.reason == "missing_credentials"


# -- rate limits ------------------------------------------------------------------------------


def test_token_bucket() -> None:
    limiter, limit = RateLimiter(), RateLimit(per_second=2.0, burst=3.0)
    assert [limiter.take("k", limit, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k", limit, 100.0) == pytest.approx(0.5)
    assert limiter.take("other", limit, 100.0) == 0.0
    assert limiter.take("k", limit, 100.6) == 0.0  # refilled 1.2 tokens
    assert limiter.take("k", limit, 100.6) > 0


# -- the role matrix on every route -------------------------------------------------------------


@pytest.fixture
def served(store: KeyStore, tokens: TokenService) -> tuple[Any, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    engine = make_engine("echo", model_id="echo")
    app = create_app(ServeSettings(model_id="echo", model_digest="0" * 64, engine="echo"),
                     engine=engine, keys=ServerKeys(now=time.time()),
                     provider=SoftwareProvider(), auth=Authenticator(store, tokens),
                     ledger_audit=lambda **event: events.append(event))
    return app, events


def test_every_route_has_a_role_entry(served: tuple[Any, list[dict[str, Any]]]) -> None:
    app, _ = served
    routes = route_keys(app)
    missing = [r for r in routes if r not in ROUTE_ROLES]
    assert not missing, f"routes without an entry in ROUTE_ROLES: {missing}"
    assert sorted(ROUTE_ROLES) == routes  # and no stale entries
    with pytest.raises(UsageError):
        check_route_matrix([*routes, ("GET", "/v1/new")])


_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/chat/completions"): {"model": "echo",
                                       "messages": [{"role": "user", "content": "hi"}]},
    ("POST", "/v1/admin/revoke-token"): {"jti": "0" * 32},
}


def test_role_matrix_is_enforced_on_every_route(
        served: tuple[Any, list[dict[str, Any]]], store: KeyStore) -> None:
    app, events = served
    keys = {role: store.create(role=role, now=NOW)[0] for role in ROLES}
    with TestClient(app) as client:
        for method, path in route_keys(app):
            allowed = ROUTE_ROLES[(method, path)]
            for who in (None, *ROLES):
                headers = {} if who is None else {"Authorization": f"Bearer {keys[who]}"}
                resp = client.request(method, path, headers=headers,
                                      json=_BODIES.get((method, path)))
                if allowed is PUBLIC or (who is not None and who in allowed):
                    assert resp.status_code not in (401, 403), (method, path, who)
                else:
                    assert resp.status_code == (401 if who is None else 403), (method, path, who)
                    assert resp.json()["error"]["code"] in ("missing_credentials",
                                                            "role_forbidden")
    denied = [e for e in events if e["action"] == "serve.denied"]
    expected = sum((len(ROLES) + 1) - (len(r) if r is not PUBLIC else len(ROLES) + 1)
                   for r in ROUTE_ROLES.values())
    assert len(denied) == expected
    assert all(e["outcome"] == "denied" and set(e["details"]) == {"route", "reason", "status"}
               for e in denied)
    assert not any(k in json.dumps(events) for k in keys.values())


def test_a_route_added_without_a_rule_is_denied(served: tuple[Any, list[dict[str, Any]]],
                                                store: KeyStore) -> None:
    app, events = served

    async def extra() -> dict[str, str]:
        return {"leak": "yes"}

    app.add_api_route("/v1/extra", extra, methods=["GET"])
    admin, _ = store.create(role="admin", now=NOW)
    with TestClient(app) as client:
        resp = client.get("/v1/extra", headers={"Authorization": f"Bearer {admin}"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "route_not_in_matrix"
    assert any(e["details"].get("reason") == "route_not_in_matrix" for e in events)
