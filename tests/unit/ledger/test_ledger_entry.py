"""Audit events and the canonical leaf encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sealtune.ledger.entry import (
    MAX_DETAILS_BYTES,
    Event,
    InvalidEventError,
    build_leaf,
    entry_from_leaf,
    format_time,
    parse_leaf,
    parse_time,
)

GOLDEN_LEAF = (
    b'{"action":"file.seal","actor":"alice","details":{"bytes":12,"name":"\xe6\x95\xb0\xe6\x8d'
    b'\xae"},"outcome":"success","prev":"' + b"0" * 64 + b'","resource":"ds/1","segment":1,'
    b'"seq":1,"time":"2024-01-02T03:04:05.000006Z","v":1}'
)


def test_leaf_is_canonical_json_golden() -> None:
    event = Event("alice", "file.seal", "ds/1", "success", {"name": "数据", "bytes": 12})
    leaf = build_leaf(seq=1, time="2024-01-02T03:04:05.000006Z", event=event, segment=1,
                      prev="0" * 64)
    assert leaf == GOLDEN_LEAF
    entry = entry_from_leaf(leaf)
    assert (entry.seq, entry.actor, entry.details) == (1, "alice", {"name": "数据", "bytes": 12})


@pytest.mark.parametrize("action", ["key.create", "file.seal", "sandbox.v2.destroy", "a.b_c"])
def test_valid_actions(action: str) -> None:
    assert Event("svc", action, "r").action == action


@pytest.mark.parametrize("action", ["key", "Key.create", "key.", ".key", "key..use", "key use",
                                    "key.créer", ""])
def test_invalid_actions(action: str) -> None:
    with pytest.raises(InvalidEventError):
        Event("svc", action, "r")


@pytest.mark.parametrize("details", [
    {"x": {1, 2}}, {"x": b"raw"}, {"x": (1, 2)}, {"x": datetime.now(UTC)}, {"x": float("nan")},
    {"x": float("inf")}, {1: "non-string key"}, {"x": "\ud800"},
    {"x": "a" * MAX_DETAILS_BYTES},
])
def test_details_must_be_small_json(details: Any) -> None:
    with pytest.raises(InvalidEventError):
        Event("svc", "key.use", "r", "success", details)


def test_details_depth_limit_and_non_mapping() -> None:
    deep: Any = "leaf"
    for _ in range(20):
        deep = [deep]
    with pytest.raises(InvalidEventError, match="nested"):
        Event("svc", "key.use", "r", "success", {"x": deep})
    with pytest.raises(InvalidEventError):
        Event("svc", "key.use", "r", "success", ["not", "a", "mapping"])  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [
    ("actor", ""), ("actor", "a\nb"), ("actor", "x" * 513), ("resource", "r\x1b[31m"),
    ("resource", 5), ("outcome", "ok"), ("actor", "line\u2028sep"),
])
def test_invalid_fields(field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"actor": "a", "action": "key.use", "resource": "r"}
    kwargs[field] = value
    with pytest.raises(InvalidEventError):
        Event(**kwargs)


def test_empty_resource_allowed_and_coerce() -> None:
    assert Event("a", "user.login", "").resource == ""
    assert Event.coerce({"actor": "a", "action": "user.login", "resource": ""}).actor == "a"
    with pytest.raises(InvalidEventError, match="unknown event keys"):
        Event.coerce({"actor": "a", "action": "user.login", "resource": "", "secret": 1})
    with pytest.raises(InvalidEventError):
        Event.coerce({"actor": "a"})


def test_time_format_is_utc_with_microseconds() -> None:
    plus8 = timezone(timedelta(hours=8))
    assert format_time(datetime(2024, 5, 1, 20, 0, tzinfo=plus8)) == "2024-05-01T12:00:00.000000Z"
    assert parse_time("2024-05-01T12:00:00.000000Z") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    with pytest.raises(InvalidEventError, match="timezone"):
        format_time(datetime(2024, 5, 1))
    bad_times = ("2024-05-01T12:00:00Z", "2024-05-01 12:00:00.000000Z",
                 "2024-05-01T12:00:00.000000")
    for bad in bad_times:
        with pytest.raises(ValueError):
            parse_time(bad)


@pytest.mark.parametrize("mutate", [
    lambda b: b.replace(b'"v":1', b'"v":2'),
    lambda b: b.replace(b",", b", ", 1),
    lambda b: b.replace(b'{"action"', b'{"zz":1,"action"'),
    lambda b: b.replace(b'"seq":1', b'"seq":1.0'),
    lambda b: b.replace(b'"seq":1', b'"seq":0'),
    lambda b: b.replace(b'"segment":1', b'"segment":true'),
    lambda b: b.replace(b'"success"', b'"maybe"'),
    lambda b: b.replace(b".000006Z", b"Z"),
    lambda b: b.replace(b'"0000', b'"000G'),
    lambda b: b[:-1],
    lambda b: b'{"v":1,' + b[1:],  # duplicate key
    lambda b: b.replace("数据".encode(), b"\\u6570\\u636e"),
])
def test_parse_leaf_is_strict(mutate: Any) -> None:
    with pytest.raises(ValueError):
        parse_leaf(mutate(GOLDEN_LEAF))
