"""An error leaves a sandbox as its class and a data-free condition code, never its text."""

from __future__ import annotations

import os

import pytest

from sealtune.errors import MalformedJSON, UsageError
from sealtune.sandbox.wire import EventWriter, decode_event


def _sent(exc: BaseException) -> dict[str, object]:
    read_fd, write_fd = os.pipe()
    try:
        EventWriter(write_fd).error(exc)
        line = os.read(read_fd, 4096)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    return dict(decode_event(line))


def test_the_class_and_code_cross_never_the_message_or_hint() -> None:
    exc = UsageError("record PLANTED-secret is too long", hint="drop PLANTED-secret",
                     code="max_length_cuts_every_answer")
    event = _sent(exc)
    assert event == {"type": "error", "name": "error", "kind": "UsageError",
                     "code": "max_length_cuts_every_answer"}


@pytest.mark.parametrize("code", ["Has Spaces", "PLANTED-secret", "x" * 65, "", "9lives", 42])
def test_a_code_that_is_not_a_short_lowercase_token_is_left_out(code: object) -> None:
    exc = UsageError("failed")
    exc.code = code  # type: ignore[assignment]
    assert _sent(exc) == {"type": "error", "name": "error", "kind": "UsageError"}


def test_errors_without_a_code_and_foreign_ones_send_the_class_only() -> None:
    assert _sent(ValueError("PLANTED")) == {"type": "error", "name": "error", "kind": "ValueError"}
    assert _sent(MalformedJSON("bad", code="invalid_json"))["code"] == "invalid_json"
