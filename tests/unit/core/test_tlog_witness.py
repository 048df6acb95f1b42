"""The add-checkpoint wire format: strict, bounded, linear, round-trips."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.core.tlog_witness import (
    MAX_PROOF_LINES,
    MAX_REQUEST_BYTES,
    AddCheckpoint,
    format_size,
    parse_add_checkpoint,
    parse_size,
)
from sealtune.errors import IntegrityError

H = base64.b64encode(bytes(32)).decode()
NOTE = "o.example\n1\n" + H + "\n\n\u2014 k AAAAAAA=\n"


@settings(max_examples=50, deadline=None)
@given(old=st.integers(0, 2**63 - 1),
       proof=st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_LINES))
def test_round_trip(old: int, proof: list[bytes]) -> None:
    req = AddCheckpoint(old, tuple(proof), NOTE)
    assert parse_add_checkpoint(req.to_body()) == req


@pytest.mark.parametrize("body", [
    "", "old 1", "old 1\n", "old 01\n\n" + NOTE, "old -1\n\n" + NOTE, "old  1\n\n" + NOTE,
    "Old 1\n\n" + NOTE, "old 1\n" + H, "old 1\n" + H + "\n", "old 1\n\n",
    "old 1\n" + H[:-1] + "\n\n" + NOTE,  # not 32 bytes
    "old 1\n" + base64.b64encode(bytes(33)).decode() + "\n\n" + NOTE,
    "old 1\n" + H.replace("=", "") + "\n\n" + NOTE,  # not canonical
    "old 99999999999999999999\n\n" + NOTE,  # above 2^63 - 1
])
def test_malformed(body: str) -> None:
    with pytest.raises(IntegrityError):
        parse_add_checkpoint(body.encode())


def test_proof_line_limit() -> None:
    ok = "old 1\n" + (H + "\n") * MAX_PROOF_LINES + "\n" + NOTE
    assert len(parse_add_checkpoint(ok.encode()).proof) == MAX_PROOF_LINES
    with pytest.raises(IntegrityError, match="more than 63"):
        parse_add_checkpoint(("old 1\n" + (H + "\n") * 64 + "\n" + NOTE).encode())
    with pytest.raises(IntegrityError):
        AddCheckpoint(1, (bytes(32),) * 64, NOTE).to_body()


def test_size_and_encoding_limits() -> None:
    with pytest.raises(IntegrityError, match="too large"):
        parse_add_checkpoint(b"old 1\n\n" + b"x" * MAX_REQUEST_BYTES)
    with pytest.raises(IntegrityError, match="UTF-8"):
        parse_add_checkpoint(b"old 1\n\n\xff\n")


def test_parse_time_is_linear() -> None:
    """The worst case the limit allows parses in well under a second (no quadratic scan)."""
    body = ("old 1\n" + "\n" * 0 + "\n" + "a\n" * (MAX_REQUEST_BYTES // 2 - 8)).encode()
    start = time.perf_counter()
    parse_add_checkpoint(body)
    assert time.perf_counter() - start < 0.5


def test_size_bodies() -> None:
    assert format_size(42) == b"42\n" and parse_size(b"42\n") == 42
    for bad in (b"42", b"042\n", b"-1\n", b"4 2\n", b"\n", b"1" * 30 + b"\n", b"\xff\n"):
        with pytest.raises(IntegrityError):
            parse_size(bad)
