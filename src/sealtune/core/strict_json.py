"""One JSON loader for untrusted input: bounded nesting, strict UTF-8, no lone surrogates.

:func:`loads` is what every parser of untrusted JSON in sealtune calls (request
bodies, JWT headers, the keyring file, attestation reports, error bodies the
client reads). Before the standard library parses anything, a linear pass of
bytes operations (C speed; see :func:`check_depth`) removes string literals
and measures the bracket depth; bytes must be strict UTF-8 (which has no
surrogates), and after parsing, if the text holds a ``\\ud800``-``\\udfff``
escape, every string, keys included, is checked for a lone surrogate.
``NaN`` and ``Infinity`` are refused.

What this protects against: a deeply nested document blowing the
interpreter's recursion limit (``RecursionError``, a 500 or a crash instead of
a clear error), strings that cannot be encoded again (a lone surrogate fails
later, far from the input, when a response or a log line is written), and
non-standard constants. Every failure is a :class:`~sealtune.errors.MalformedJSON`
whose message never quotes the input. What it does not: limit the size of
the input (callers cap bytes before calling) or check the document's schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from sealtune.errors import MalformedJSON

#: Deep enough for every document sealtune reads; far below the recursion limit.
MAX_DEPTH = 64

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_CHUNK = 1 << 16
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise MalformedJSON(f"the JSON holds {name}, which is not standard JSON",
                        code="invalid_json")


def _outside_strings(raw: bytes) -> bytes:
    """``raw`` without its string literals (only its quotes and brackets matter after).

    Escaped backslashes go first, then escaped quotes (left to right, as JSON
    reads escapes); the quotes left then delimit strings: every other piece of
    a split is outside them (an unterminated string runs to the end). On UTF-8,
    no byte of a multi-byte character is ASCII, so this is exact on bytes.
    """
    plain = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(plain.split(b'"')[::2])


def check_depth(raw: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Refuse JSON (UTF-8) nested deeper than ``max_depth`` outside string literals.

    Linear, at C speed: string literals are cut out (:func:`_outside_strings`),
    the brackets left are kept by ``bytes.translate``, and their running depth
    is summed by ``itertools.accumulate``, a chunk at a time (a deep document
    stops at its first chunk). A document with at most ``max_depth`` opening
    brackets in all (most requests) skips all of that.

    Raises:
        MalformedJSON: ``json_too_deep``.
    """
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    brackets = _outside_strings(raw).translate(None, _NOT_BRACKETS)
    level = 0
    for start in range(0, len(brackets), _CHUNK):
        sums = list(accumulate(map(_STEP.__getitem__, brackets[start:start + _CHUNK]),
                               initial=level))
        if max(sums) > max_depth:
            raise MalformedJSON(f"the JSON is nested deeper than {max_depth} levels",
                                code="json_too_deep")
        level = sums[-1]


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise MalformedJSON("a JSON string holds a lone UTF-16 surrogate (an unpaired "
                                    "\\ud800-\\udfff escape)", code="invalid_unicode")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH,
          object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
          parse_float: Callable[[str], Any] | None = None) -> Any:
    """Parse untrusted JSON strictly.

    Args:
        data: UTF-8 bytes (strictly decoded) or text.
        max_depth: the deepest nesting of arrays and objects accepted.
        object_pairs_hook: as for :func:`json.loads` (e.g. to refuse duplicate keys).
        parse_float: as for :func:`json.loads`.

    Raises:
        MalformedJSON: ``code`` says why: ``invalid_unicode`` (not UTF-8, or a
            lone surrogate), ``json_too_deep`` or ``invalid_json``.
    """
    if isinstance(data, str):
        if _SURROGATE.search(data):
            raise MalformedJSON("the JSON text holds a lone UTF-16 surrogate",
                                code="invalid_unicode")
        raw, text = data.encode("utf-8"), data
    else:
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")  # strict: encoded surrogates are refused too
        except UnicodeDecodeError:
            raise MalformedJSON("the JSON is not valid UTF-8", code="invalid_unicode") from None
    check_depth(raw, max_depth)
    try:
        value = json.loads(text, object_pairs_hook=object_pairs_hook, parse_float=parse_float,
                           parse_constant=_reject_constant)
    except MalformedJSON:
        raise
    except (ValueError, RecursionError):  # RecursionError: belt and braces, see depth()
        raise MalformedJSON("the text is not valid JSON", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(raw):  # only a \\uD800-\\uDFFF escape can make one
        _check_strings(value)
    return value
