"""JWT signing-key rotation: kids in every header, verify-only keys, retirement, reloads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from sealtune.errors import KeyringError, UsageError
from sealtune.keys.keyfile import b64encode
from sealtune.serve import retire_token_key, rotate_token_key, token_service
from sealtune.serve.auth import (
    JWT_RECORD_PREFIX,
    MAX_TTL,
    Denied,
    TokenKey,
    TokenKeySet,
    TokenService,
)
from sealtune.serve.keystore import ApiKeyInfo, KeyStore
from sealtune.workspace import Workspace

NOW = datetime.now(UTC).replace(microsecond=0)
ISSUER = "sealtune/rotation"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLoader:
    """A loader returning whatever ``keys`` is now, counting its calls."""

    def __init__(self, keys: TokenKeySet) -> None:
        self.keys, self.calls = keys, 0
        self.fail = False

    def __call__(self) -> TokenKeySet:
        self.calls += 1
        if self.fail:
            raise KeyringError("keyring unreadable")
        return self.keys


@pytest.fixture
def info(tmp_path: Path) -> ApiKeyInfo:
    _, key = KeyStore(tmp_path / "serve-keys.json").create(role="consumer", now=NOW)
    return key


def _refused(service: TokenService, token: str) -> Denied:
    with pytest.raises(Denied) as caught:
        service.verify(token)
    assert (caught.value.status, caught.value.reason) == (401, "invalid_token")
    assert caught.value.message == "the bearer token is not valid"
    return caught.value


def _kid(token: str) -> Any:
    return jwt.get_unverified_header(token).get("kid")


def _claims(info: ApiKeyInfo) -> dict[str, Any]:
    iat = int(datetime.now(UTC).timestamp())
    return {"iss": ISSUER, "aud": "sealtune-serve", "sub": info.key_id, "role": info.role,
            "iat": iat, "nbf": iat, "exp": iat + 600, "jti": "a" * 32}


# -- the key set and the service -------------------------------------------------------------


def test_old_tokens_verify_after_rotation_and_new_ones_carry_the_new_kid(
        info: ApiKeyInfo) -> None:
    keys = TokenKeySet.single(b"k" * 32, now=NOW - timedelta(days=2))
    before = TokenService(keys, issuer=ISSUER).issue(info, now=NOW)
    assert _kid(before.token) == keys.signing.kid
    rotated = keys.rotated(now=NOW)
    assert rotated.signing.kid != keys.signing.kid
    assert rotated.get(keys.signing.kid) is not None
    assert rotated.get(keys.signing.kid).state == "verify-only"  # type: ignore[union-attr]
    service = TokenService(rotated, issuer=ISSUER)
    assert service.verify(before.token)["jti"] == before.jti
    after = service.issue(info, now=NOW)
    assert jwt.get_unverified_header(after.token) == {"alg": "HS256", "typ": "JWT",
                                                       "kid": rotated.signing.kid}
    assert service.verify(after.token)["sub"] == info.key_id
    again = rotated.rotated(now=NOW + timedelta(hours=1))
    assert [k.state for k in again.keys].count("signing") == 1 and len(again.keys) == 3


def test_unknown_missing_retired_and_swapped_kids_are_refused(info: ApiKeyInfo) -> None:
    old = TokenKeySet.single(b"o" * 32, now=NOW - timedelta(days=3))
    keys = old.rotated(now=NOW - timedelta(days=2))
    service = TokenService(keys, issuer=ISSUER)
    old_key, new_key = old.signing, keys.signing
    claims = _claims(info)
    assert service.verify(jwt.encode(claims, old_key.secret, algorithm="HS256",
                                     headers={"kid": old_key.kid}))
    cases = {
        "unknown kid": jwt.encode(claims, new_key.secret, algorithm="HS256",
                                  headers={"kid": "nosuchkid"}),
        "no kid": jwt.encode(claims, new_key.secret, algorithm="HS256"),
        "empty kid": jwt.encode(claims, new_key.secret, algorithm="HS256", headers={"kid": ""}),
        "unsafe kid": jwt.encode(claims, new_key.secret, algorithm="HS256",
                                 headers={"kid": "../../etc/passwd"}),
        "long kid": jwt.encode(claims, new_key.secret, algorithm="HS256",
                               headers={"kid": "k" * 41}),
        # signed by the verify-only key, relabelled as the signing key
        "swapped kid": jwt.encode(claims, old_key.secret, algorithm="HS256",
                                  headers={"kid": new_key.kid}),
        "extra header": jwt.encode(claims, new_key.secret, algorithm="HS256",
                                   headers={"kid": new_key.kid, "cty": "JWT"}),
    }
    for name, token in cases.items():
        denied = _refused(service, token)
        assert token not in denied.message and "nosuchkid" not in denied.message, name
    retired = TokenService(keys.retired(old_key.kid, now=NOW), issuer=ISSUER)
    _refused(retired, jwt.encode(claims, old_key.secret, algorithm="HS256",
                                 headers={"kid": old_key.kid}))


def test_retire_refuses_the_signing_key_and_recent_keys_unless_forced() -> None:
    keys = TokenKeySet.single(b"s" * 32, now=NOW - timedelta(days=5))
    first = keys.signing.kid
    rotated = keys.rotated(now=NOW - timedelta(hours=23))
    with pytest.raises(UsageError, match="current signing key") as caught:
        rotated.retired(rotated.signing.kid, now=NOW)
    assert "rotate-token-key" in (caught.value.hint or "")
    with pytest.raises(UsageError, match="less than 24 hours") as caught:
        rotated.retired(first, now=NOW)
    safe = (NOW - timedelta(hours=23) + MAX_TTL).isoformat(timespec="seconds")
    assert safe in caught.value.message and "--force" in (caught.value.hint or "")
    with pytest.raises(UsageError, match="no token key"):
        rotated.retired("nosuchkid", now=NOW)
    with pytest.raises(UsageError, match="no token key"):
        rotated.retired("bad kid!", now=NOW)
    assert rotated.retired(first, now=NOW, force=True).get(first) is None
    later = rotated.retired(first, now=NOW + timedelta(hours=1))
    assert [k.kid for k in later.keys] == [rotated.signing.kid]


def test_key_sets_are_validated_and_round_trip_through_records() -> None:
    a = TokenKey("a", b"a" * 32, NOW)
    with pytest.raises(UsageError):
        TokenKeySet((a, TokenKey("b", b"b" * 32, NOW)))  # two signing keys
    with pytest.raises(UsageError):
        TokenKeySet((TokenKey("a", b"a" * 32, NOW, NOW),))  # none
    with pytest.raises(UsageError):
        TokenKeySet((a, TokenKey("a", b"c" * 32, NOW, NOW)))  # one kid twice
    with pytest.raises(UsageError):
        TokenKey("a/b", b"a" * 32, NOW)
    with pytest.raises(UsageError):
        TokenService(b"short", issuer=ISSUER)
    keys = TokenKeySet.single(b"r" * 32, now=NOW).rotated(now=NOW)
    records = keys.records()
    assert all(name.startswith(JWT_RECORD_PREFIX) for name in records)
    assert set(TokenKeySet.from_records({**records, "other": {"x": 1}}).keys) == set(keys.keys)
    assert "rrrr" not in repr(keys)  # secrets stay out of reprs
    name = next(iter(records))
    for broken in ({"key": "!!"}, {**records[name], "created": "yesterday"},
                   {**records[name], "created": "2026-01-01T00:00:00"}, {}):
        with pytest.raises(KeyringError):
            TokenKeySet.from_records({**records, name: broken})


# -- reloading: rate limit, period, failure --------------------------------------------------


def test_unknown_kid_reloads_at_most_once_per_interval(info: ApiKeyInfo) -> None:
    keys = TokenKeySet.single(b"1" * 32, now=NOW)
    loader, clock = CountingLoader(keys), Clock()
    server = TokenService(keys, issuer=ISSUER, loader=loader, clock=clock)
    garbage = jwt.encode(_claims(info), b"g" * 32, algorithm="HS256", headers={"kid": "junk"})
    for _ in range(100):
        _refused(server, garbage)
    assert loader.calls == 0  # loaded at construction, less than 5 s ago
    clock.now += 5
    for _ in range(100):
        _refused(server, garbage)
    assert loader.calls == 1
    # rotated elsewhere: the new kid is unknown here until the next allowed reload
    loader.keys = keys.rotated(now=NOW)
    fresh = TokenService(loader.keys, issuer=ISSUER).issue(info, now=datetime.now(UTC))
    clock.now += 4
    _refused(server, fresh.token)
    assert loader.calls == 1
    clock.now += 1
    assert server.verify(fresh.token)["jti"] == fresh.jti
    assert loader.calls == 2
    for _ in range(10):  # known kids never reload before the period
        server.verify(fresh.token)
    assert loader.calls == 2


def test_periodic_reload_bounds_how_long_a_retired_key_verifies(info: ApiKeyInfo) -> None:
    old = TokenKeySet.single(b"2" * 32, now=NOW - timedelta(days=2))
    keys = old.rotated(now=NOW - timedelta(days=1, hours=1))
    loader, clock = CountingLoader(keys), Clock()
    server = TokenService(keys, issuer=ISSUER, loader=loader, clock=clock)
    token = TokenService(old, issuer=ISSUER).issue(info, now=datetime.now(UTC)).token
    assert server.verify(token)
    loader.keys = keys.retired(old.signing.kid, now=NOW)  # by another process
    clock.now += 29
    assert server.verify(token)  # not yet reloaded: within the 30 s bound
    assert loader.calls == 0
    clock.now += 1
    _refused(server, token)
    assert loader.calls == 1
    # issuing reloads on the same period: never signs with a superseded key
    loader.keys = loader.keys.rotated(now=NOW)
    clock.now += 30
    assert _kid(server.issue(info, now=datetime.now(UTC)).token) == loader.keys.signing.kid


def test_a_failed_reload_fails_closed_until_one_succeeds(
        info: ApiKeyInfo, caplog: pytest.LogCaptureFixture) -> None:
    keys = TokenKeySet.single(b"3" * 32, now=NOW)
    loader, clock = CountingLoader(keys), Clock()
    server = TokenService(keys, issuer=ISSUER, loader=loader, clock=clock)
    token = server.issue(info, now=datetime.now(UTC)).token
    loader.fail = True
    clock.now += 30
    with caplog.at_level(logging.ERROR, logger="sealtune.serve.auth"):
        _refused(server, token)
    assert "KeyringError" in caplog.text and "unreadable" not in caplog.text
    with pytest.raises(KeyringError):
        server.issue(info, now=datetime.now(UTC))
    assert loader.calls == 1  # a second try waits for the reload interval
    loader.fail = False
    clock.now += 4
    _refused(server, token)
    clock.now += 1
    assert server.verify(token) and loader.calls == 2


def test_concurrent_verifications_share_one_reload(info: ApiKeyInfo) -> None:
    keys = TokenKeySet.single(b"4" * 32, now=NOW)
    loader, clock = CountingLoader(keys), Clock()
    server = TokenService(keys, issuer=ISSUER, loader=loader, clock=clock)
    good = server.issue(info, now=datetime.now(UTC)).token
    garbage = jwt.encode(_claims(info), b"g" * 32, algorithm="HS256", headers={"kid": "junk"})
    clock.now += 6
    start, errors = threading.Barrier(8), []

    def hammer() -> None:
        start.wait()
        for _ in range(50):
            try:
                server.verify(garbage)
            except Denied:
                pass
            else:
                errors.append("accepted")
            server.verify(good)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and loader.calls == 1


# -- the workspace keyring ---------------------------------------------------------------------


@pytest.fixture
def second(workspace: Workspace, passphrase: str) -> Iterator[Callable[[], Workspace]]:
    """Other handles on the same workspace, as another process would open it."""
    opened: list[Workspace] = []

    def make() -> Workspace:
        ws = Workspace.open(workspace.root, passphrase=passphrase)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


def _records(ws: Workspace) -> dict[str, dict[str, Any]]:
    ws.keyfile.reload()
    return ws.keyfile.items("serve")


def test_legacy_record_is_migrated_once_and_kidless_tokens_are_refused(
        workspace: Workspace, second: Callable[[], Workspace], info: ApiKeyInfo) -> None:
    secret = b"L" * 32
    workspace.keyfile.put("serve", "jwt-hs256", {"key": b64encode(secret)})
    legacy_token = jwt.encode(_claims(info), secret, algorithm="HS256")  # as 0.1 issued them
    handles = [second() for _ in range(4)]
    for ws in handles:
        ws.keyfile  # noqa: B018 - unlock now, so each handle holds the pre-migration state
    start, services = threading.Barrier(len(handles)), []

    def migrate(ws: Workspace) -> None:
        start.wait()
        services.append(token_service(ws))

    threads = [threading.Thread(target=migrate, args=(ws,)) for ws in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = _records(workspace)
    assert "jwt-hs256" not in records and len(records) == 1
    (name, rec), = records.items()
    kid = name.removeprefix(JWT_RECORD_PREFIX)
    assert rec["key"] == b64encode(secret) and rec["superseded"] is None
    assert {s.keys.signing.kid for s in services} == {kid}
    migrated = [e for e in workspace.ledger.entries(action="serve.jwt_key_migrated")]
    assert [e.details for e in migrated] == [{"kid": kid}]
    # kid is required: tokens from before the migration are refused, new ones carry it
    service = TokenService(token_service(workspace).keys, issuer=ISSUER)
    _refused(service, legacy_token)
    assert service.verify(jwt.encode(_claims(info), secret, algorithm="HS256",
                                     headers={"kid": kid}))  # the same key, with its kid
    assert _kid(service.issue(info, now=datetime.now(UTC)).token) == kid
    # an older sealtune writing a legacy record again: it joins as verify-only
    workspace.keyfile.put("serve", "jwt-hs256", {"key": b64encode(b"M" * 32)})
    assert token_service(workspace).keys.signing.kid == kid
    assert len(_records(workspace)) == 2


def test_rotation_and_retirement_reach_a_running_service(
        workspace: Workspace, second: Callable[[], Workspace], info: ApiKeyInfo) -> None:
    clock = Clock()
    server = token_service(workspace, clock=clock)  # as `sealtune serve` builds it
    first = server.keys.signing.kid
    assert [e.details for e in workspace.ledger.entries(action="serve.jwt_key_created")] \
        == [{"kid": first}]
    before = server.issue(info, now=datetime.now(UTC))
    cli = second()  # another process: the CLI
    old, new = rotate_token_key(cli, now=datetime.now(UTC))
    assert old == first and new != first
    token = token_service(cli).issue(info, now=datetime.now(UTC))
    assert _kid(token.token) == new
    clock.now += 5
    assert server.verify(token.token)["jti"] == token.jti  # reloaded on the unknown kid
    assert server.verify(before.token)["jti"] == before.jti  # verify-only now
    with pytest.raises(UsageError, match="current signing key"):
        retire_token_key(cli, new, now=datetime.now(UTC))
    with pytest.raises(UsageError, match="less than 24 hours"):
        retire_token_key(cli, old, now=datetime.now(UTC))
    assert {n.removeprefix(JWT_RECORD_PREFIX) for n in _records(workspace)} == {old, new}
    retire_token_key(cli, old, now=datetime.now(UTC) + MAX_TTL)
    assert {n.removeprefix(JWT_RECORD_PREFIX) for n in _records(workspace)} == {new}
    assert server.verify(before.token)  # until the periodic reload
    clock.now += 30
    _refused(server, before.token)
    actions = {e.action: e.details for e in workspace.ledger.entries()}
    assert actions["serve.jwt_key_rotated"] == {"old_kid": old, "new_kid": new}
    assert actions["serve.jwt_key_retired"] == {"kid": old, "forced": False}
    secrets_b64 = [r["key"] for r in _records(workspace).values()]
    assert not any(s in repr(list(workspace.ledger.entries())) for s in secrets_b64)
