"""The safetensors header check: real files pass, crafted headers fail with the right code."""

from __future__ import annotations

import contextlib
import io
import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from sealtune.assess.safetensors_check import MAX_HEADER, HeaderProblem, check_header


def _file(header: dict[str, object], body: bytes, *, pad: bytes = b"") -> bytes:
    raw = json.dumps(header).encode() + pad
    return struct.pack("<Q", len(raw)) + raw + body


def _check(data: bytes) -> int:
    return check_header(io.BytesIO(data), len(data))


def _problem(data: bytes) -> str:
    with pytest.raises(HeaderProblem) as info:
        _check(data)
    return info.value.code


def test_a_file_written_by_safetensors_passes() -> None:
    data = save({"a": torch.zeros(3, 4), "b": torch.ones(2, dtype=torch.int64),
                 "empty": torch.zeros(0)}, metadata={"format": "pt"})
    assert _check(data) == 3


def test_trailing_spaces_in_the_header_are_padding() -> None:
    data = _file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8),
                 pad=b"    ")
    assert _check(data) == 1


GOOD = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(("header", "body", "code"), [
    ({"a": GOOD, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12),
     "overlap"),
    ({"a": GOOD}, bytes(9), "trailing_data"),
    ({"a": GOOD}, bytes(7), "beyond_file"),
    ({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, bytes(8), "bad_dtype"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), "size_mismatch"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), "bad_shape"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8), "bad_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}}, bytes(8),
     "bad_entry"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, bytes(12), "gap"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8), "gap"),
    ({"__metadata__": {"k": 1}, "a": GOOD}, bytes(8), "bad_metadata"),
])
def test_crafted_headers_fail_with_their_problem(header: dict[str, object], body: bytes,
                                                 code: str) -> None:
    assert _problem(_file(header, body)) == code


def test_a_huge_header_length_is_refused_without_reading_it() -> None:
    data = struct.pack("<Q", MAX_HEADER + 1) + b"{}"
    assert _problem(data) == "header_too_large"
    assert _problem(struct.pack("<Q", 2**64 - 1) + b"{}") == "header_too_large"


def test_a_header_longer_than_the_file_is_refused() -> None:
    assert _problem(struct.pack("<Q", 1000) + b"{}") == "header_beyond_file"


def test_a_duplicate_key_is_refused() -> None:
    raw = b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, ' \
          b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
    assert _problem(struct.pack("<Q", len(raw)) + raw + bytes(8)) == "duplicate_key"


@pytest.mark.parametrize("raw", [b"[]", b"not json", b"\xff\xfe{}", b'{"a": 1} x', b"  {}"])
def test_a_header_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    assert _problem(struct.pack("<Q", len(raw)) + raw) in {"not_json_object", "not_utf8",
                                                            "bad_entry"}


def test_a_short_file_is_refused() -> None:
    assert _problem(b"\x01\x00") == "truncated"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=200))
def test_any_bytes_give_a_count_or_a_header_problem(junk: bytes, cut: int) -> None:
    base = save({"w": torch.zeros(2, 2)})
    data = base[:cut] + junk + base[cut + len(junk):]
    with contextlib.suppress(HeaderProblem):  # any other exception fails the test
        _check(data)
