"""Console sessions and the guard: expiry, hashed ids, CSRF, cross-site refusal, the matrix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sealtune.api.session import IDLE, LIFETIME, ConsoleAuth
from sealtune.serve.auth import Authenticator, Denied
from sealtune.serve.keystore import KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Setup = tuple[ConsoleAuth, KeyStore, Clock]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    store = KeyStore(tmp_path / "serve-keys.json")
    clock = Clock()
    return ConsoleAuth(Authenticator(store, None), clock=clock), store, clock


def _check(auth: ConsoleAuth, sid: str | None, *, method: str = "GET",
           path: str = "/api/v1/jobs", csrf: str | None = None, origin_ok: bool = True,
           authorization: str | None = None) -> str:
    caller = auth.check(method=method, path=path, authorization=authorization, session_id=sid,
                        csrf=csrf, origin_ok=origin_ok, client="127.0.0.1")
    return caller.principal.caller


def test_sessions_expire_when_idle_and_at_their_lifetime(setup: Setup) -> None:
    auth, store, clock = setup
    key, info = store.create(role="auditor", now=datetime.now(UTC))
    sid, _ = auth.login(key)
    assert _check(auth, sid) == info.key_id
    clock.now += IDLE - 1
    assert _check(auth, sid) == info.key_id  # use keeps it alive
    clock.now += IDLE + 1
    with pytest.raises(Denied) as idle:
        _check(auth, sid)
    assert idle.value.reason == "no_session"
    sid, _ = auth.login(key)
    for _ in range(int(LIFETIME // (IDLE / 2)) + 1):
        clock.now += IDLE / 2
        try:
            _check(auth, sid)
        except Denied as exc:
            assert exc.reason == "no_session"
            break
    else:
        pytest.fail("a session outlived its lifetime")


def test_session_ids_are_kept_only_as_hashes(setup: Setup) -> None:
    auth, store, _ = setup
    key, _ = store.create(role="admin", now=datetime.now(UTC))
    sid, session = auth.login(key)
    assert sid not in repr(auth._sessions) and len(sid) >= 40
    assert session.csrf not in (sid, key)
    with pytest.raises(Denied):
        _check(auth, sid[:-1] + ("A" if sid[-1] != "A" else "B"))


def test_csrf_and_cross_site_state_changes_are_refused(setup: Setup) -> None:
    auth, store, _ = setup
    key, _ = store.create(role="operator", now=datetime.now(UTC))
    sid, session = auth.login(key)
    post = {"method": "POST", "path": "/api/v1/audit/checkpoint"}
    for csrf in (None, "", session.csrf[:-1], session.csrf + "x"):
        with pytest.raises(Denied) as exc:
            _check(auth, sid, csrf=csrf, **post)
        assert exc.value.reason == "csrf_failed"
    with pytest.raises(Denied) as cross:
        _check(auth, sid, csrf=session.csrf, origin_ok=False, **post)
    assert cross.value.reason == "cross_origin"
    assert _check(auth, sid, csrf=session.csrf, **post)
    # a bearer caller needs no CSRF token (browsers never attach it on their own)
    assert _check(auth, None, authorization=f"Bearer {key}", **post)


def test_roles_matrix_and_revocation(setup: Setup) -> None:
    auth, store, _ = setup
    key, info = store.create(role="consumer", now=datetime.now(UTC))
    sid, _ = auth.login(key)
    assert _check(auth, sid, path="/api/v1/models")
    with pytest.raises(Denied) as forbidden:
        _check(auth, sid, path="/api/v1/audit/export")
    assert forbidden.value.status == 403 and forbidden.value.reason == "role_forbidden"
    with pytest.raises(Denied) as unknown:
        _check(auth, sid, path="/api/v1/secret-route")
    assert unknown.value.reason == "route_not_in_matrix"
    store.revoke(info.key_id, now=datetime.now(UTC))
    with pytest.raises(Denied) as revoked:
        _check(auth, sid, path="/api/v1/models")
    assert revoked.value.status == 401
    with pytest.raises(Denied):
        auth.login(key)
    with pytest.raises(Denied):
        auth.login("not-a-key")
