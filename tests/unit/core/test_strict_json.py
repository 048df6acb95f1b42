"""The strict JSON loader: bounded depth, strict UTF-8, no lone surrogates, linear time."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.core.strict_json import MAX_DEPTH, check_depth, loads
from sealtune.errors import MalformedJSON

_TEXT = st.text(alphabet=st.sampled_from(list('ab[]{}"\\\n\u00e9\U0001f600 ,:')), max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=40)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_JSON, st.integers(min_value=0, max_value=8), st.booleans())
def test_depth_check_agrees_with_the_real_depth(value: Any, limit: int, ascii_only: bool) -> None:
    """Brackets, quotes and backslashes inside strings never confuse the depth scan."""
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    if _depth(value) <= limit:
        check_depth(raw, limit)
        assert loads(raw, max_depth=limit) == value
    else:
        with pytest.raises(MalformedJSON) as exc:
            check_depth(raw, limit)
        assert exc.value.code == "json_too_deep"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 200_000, "json_too_deep"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "json_too_deep"),
        (b'{"a": ' * 100_000, "json_too_deep"),
        (b'["\\ud800"]', "invalid_unicode"),
        (b'["\\udfff\\ud800"]', "invalid_unicode"),  # a low then a high: not a pair
        (b'{"\\ud800": 1}', "invalid_unicode"),
        (b'["\xed\xa0\x80"]', "invalid_unicode"),  # a surrogate encoded in UTF-8
        (b'["\xff"]', "invalid_unicode"),
        (b'["\xc3"]', "invalid_unicode"),  # a truncated sequence
        (b"[NaN]", "invalid_json"),
        (b"[Infinity]", "invalid_json"),
        (b"[1,", "invalid_json"),
        (b'"unterminated', "invalid_json"),
        (b"", "invalid_json"),
    ],
)
def test_refusals_have_a_code(raw: bytes, code: str) -> None:
    with pytest.raises(MalformedJSON) as exc:
        loads(raw)
    assert exc.value.code == code
    assert exc.value.exit_code == 1 and exc.value.diagnostics().startswith("input:")


def test_what_is_accepted() -> None:
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    assert loads(b'["\\ud83d\\ude00"]') == ["\U0001f600"]  # a surrogate pair is a character
    assert loads(b'["\\\\ud800"]') == ["\\ud800"]  # an escaped backslash, not an escape
    assert loads('{"a": "é"}') == {"a": "é"}
    with pytest.raises(MalformedJSON):
        loads("[\ud800]")  # text with a raw lone surrogate


def test_time_is_linear_in_the_input() -> None:
    """Each hostile shape, 4 times larger (1 MiB to 4 MiB), costs at most about 4 times
    more (medians; a quadratic scan would cost 16 times more)."""
    shapes = {
        "deep": lambda n: b"[" * n,
        "wide": lambda n: b"[" + b"[]," * (n // 3) + b"[]]",
        "escaped-quotes": lambda n: b'["' + b'\\"' * (n // 2) + b'"]',
        "unterminated": lambda n: b'"' + b'\\"' * (n // 2),
        "short-strings": lambda n: b"[" + b'"a",' * (n // 4) + b'"a"]',
        "brackets-in-strings": lambda n: b'["' + b"[{" * (n // 2) + b'"]',
    }

    def cost(raw: bytes, runs: int) -> float:
        # CPU time of this process (the parse is single-threaded): a loaded machine
        # slows the wall clock, not this.
        times = []
        for _ in range(runs):
            began = time.process_time()
            with contextlib.suppress(MalformedJSON):
                loads(raw)
            times.append(time.process_time() - began)
        return sorted(times)[runs // 2]

    for name, make in shapes.items():
        small, big = cost(make(1 << 20), 3), cost(make(1 << 22), 3)
        if big >= 8 * max(small, 2e-3):  # measure again, longer, before failing
            small, big = cost(make(1 << 20), 7), cost(make(1 << 22), 7)
        assert big < 8 * max(small, 2e-3), (name, small, big)
