"""A strict check of a safetensors file's header against its size, without loading it.

The format (https://github.com/huggingface/safetensors): an 8-byte
little-endian header length ``N``, ``N`` bytes of UTF-8 JSON mapping each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus an
optional ``__metadata__`` object of strings), then the byte buffer the
offsets index. :func:`check_header` reads the length and the header only
(never the buffer) and refuses, naming the first problem:

* a header length beyond :data:`MAX_HEADER` or beyond the file;
* a header that is not UTF-8, not a JSON object, holds a duplicate key, or
  does not start with ``{`` (trailing spaces are the only padding allowed);
* an entry with other keys than those three, an unknown dtype, a shape that
  is not a list of non-negative integers, offsets that are not two integers
  ``0 <= begin <= end``, or a byte size that does not equal the element
  count times the dtype's width;
* tensors that overlap, leave a gap between them, do not start at 0, or do
  not reach exactly the end of the file (trailing data: bytes no tensor
  claims, where anything can hide);
* more than :data:`MAX_TENSORS` tensors, metadata values that are not strings.

Linear in the header (one JSON parse, one sort of the offsets); the
buffer's bytes are never read.

What this protects against: crafted files that make a loader read out of
bounds, allocate absurd amounts, or that carry hidden payloads in
unindexed bytes. What it does not: judge the values of the weights (a
well-formed file can hold a backdoored model), or the tokenizer and config
files beside it.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import BinaryIO

#: The safetensors library's own limit on the header, 100 MB.
MAX_HEADER = 100_000_000
MAX_TENSORS = 1_000_000
#: Bits per element of every dtype the format defines.
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
              "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
              "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6,
              "F6_E3M2": 6}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


class HeaderProblem(ValueError):
    """The header is malformed; ``str()`` is a short fixed phrase (no file content)."""

    def __init__(self, code: str, phrase: str) -> None:
        super().__init__(phrase)
        self.code = code


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise HeaderProblem("duplicate_key", "the header names a key twice")
        out[key] = value
    return out


def read_header(fh: BinaryIO, size: int) -> dict[str, object]:
    """Read and parse the header of a ``size``-byte safetensors file open at offset 0.

    Raises:
        HeaderProblem: the length or the JSON is bad (see the module docstring).
    """
    head = fh.read(8)
    if len(head) != 8:
        raise HeaderProblem("truncated", "shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_HEADER:
        raise HeaderProblem("header_too_large", "the header length exceeds 100 MB")
    if length + 8 > size:
        raise HeaderProblem("header_beyond_file", "the header length runs past the file")
    raw = fh.read(length)
    if len(raw) != length:
        raise HeaderProblem("truncated", "the file ends inside the header")
    if not raw.startswith(b"{") or raw.rstrip(b" ")[-1:] != b"}":
        raise HeaderProblem("not_json_object", "the header is not a JSON object")
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise HeaderProblem("not_utf8", "the header is not UTF-8") from None
    except HeaderProblem:
        raise
    except (ValueError, RecursionError):
        raise HeaderProblem("not_json_object", "the header is not a JSON object") from None
    if not isinstance(doc, dict):
        raise HeaderProblem("not_json_object", "the header is not a JSON object")
    return doc


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entries(doc: dict[str, object]) -> Iterator[tuple[int, int, int]]:
    """``(begin, end, expected bytes)`` of each tensor entry, each checked alone."""
    for name, entry in doc.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str)
                                                      for v in entry.values()):
                raise HeaderProblem("bad_metadata", "__metadata__ must map names to strings")
            continue
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            raise HeaderProblem("bad_entry", "a tensor entry needs exactly dtype, shape "
                                "and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise HeaderProblem("bad_dtype", "a tensor has an unknown dtype")
        if not isinstance(shape, list) or not all(_int(d) and d >= 0 for d in shape):
            raise HeaderProblem("bad_shape", "a shape is not a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_int(o) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise HeaderProblem("bad_offsets", "data_offsets must be two integers "
                                "0 <= begin <= end")
        bits = math.prod(shape) * DTYPE_BITS[dtype]
        yield offsets[0], offsets[1], (bits + 7) // 8


def check_header(fh: BinaryIO, size: int) -> int:
    """Check a safetensors file (see the module docstring); return its tensor count.

    Args:
        fh: the file, open for reading at offset 0 (only the header is read).
        size: the file's size in bytes.

    Raises:
        HeaderProblem: the first problem found, with a code such as ``overlap``,
            ``trailing_data``, ``bad_dtype``, ``size_mismatch`` or ``header_too_large``.
    """
    doc = read_header(fh, size)
    spans = []
    for begin, end, expected in _entries(doc):
        if end - begin != expected:
            raise HeaderProblem("size_mismatch", "a tensor's byte size does not match its "
                                "shape and dtype")
        spans.append((begin, end))
        if len(spans) > MAX_TENSORS:
            raise HeaderProblem("too_many_tensors", "more than a million tensors")
    (length,) = struct.unpack("<Q", _peek_length(fh))
    buffer = size - 8 - length
    cursor = 0
    for begin, end in sorted(spans):
        if begin < cursor:
            raise HeaderProblem("overlap", "two tensors share bytes")
        if begin > cursor:
            raise HeaderProblem("gap", "bytes between tensors belong to no tensor")
        cursor = end
    if cursor > buffer:
        raise HeaderProblem("beyond_file", "a tensor runs past the end of the file")
    if cursor < buffer:
        raise HeaderProblem("trailing_data", "bytes after the last tensor belong to no tensor")
    return len(spans)


def _peek_length(fh: BinaryIO) -> bytes:
    fh.seek(0)
    return fh.read(8)
