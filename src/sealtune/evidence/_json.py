"""Canonical JSON for evidence files, and its strict reader.

Every JSON document sealtune signs or lists in a bundle is written
canonically: keys sorted, no insignificant whitespace, UTF-8 without ``\\u``
escapes for non-ASCII, integers and finite floats as Python writes them
(shortest round-trip ``repr``, the same on every platform), no NaN or
Infinity. The reader refuses duplicate keys, non-UTF-8 input, deep nesting and
non-standard constants, and :func:`loads_canonical` also refuses any byte
sequence that is not exactly the canonical form of what it parsed, so one
document has one encoding and a changed byte cannot leave its meaning intact.

What this protects against: two encodings of the same signed content, a
duplicate key read one way here and another way by another parser, a
document that blows the recursion limit. What it does not: check any schema
(callers do) or limit the input's size (callers cap bytes before parsing).
"""

from __future__ import annotations

import json
from typing import Any

from sealtune.core import strict_json
from sealtune.errors import IntegrityError, MalformedJSON


def canonical(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes.

    Raises:
        ValueError: a float is NaN or infinite, or a value is not JSON.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MalformedJSON("a JSON object repeats a key", code="invalid_json")
    return out


def loads(data: bytes, *, what: str) -> Any:
    """Parse untrusted JSON strictly (no duplicate keys, bounded depth).

    Args:
        data: the bytes.
        what: the file or field, for the error message.

    Raises:
        IntegrityError: the bytes are not strict JSON.
    """
    try:
        return strict_json.loads(data, object_pairs_hook=_no_duplicates)
    except MalformedJSON as exc:
        raise IntegrityError(f"{what}: {exc.message}") from None


def loads_canonical(data: bytes, *, what: str) -> Any:
    """Parse JSON that must be in canonical form (see the module docstring).

    Raises:
        IntegrityError: not strict JSON, or not byte-for-byte canonical.
    """
    value = loads(data, what=what)
    try:
        again = canonical(value)
    except ValueError:
        raise IntegrityError(f"{what}: not canonical JSON") from None
    if again != data:
        raise IntegrityError(f"{what}: not canonical JSON (sorted keys, no spaces, "
                             "no escapes, no trailing bytes)")
    return value
