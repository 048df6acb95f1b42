"""The OpenAI chat-completions wire format: strict request parsing and response shapes.

Requests are parsed from raw bytes (not through a validation model that
echoes input back): an error names the parameter and the rule, never its
value. Unknown parameters are refused (fail closed) except a few that are
accepted at their neutral value (``n=1``, zero penalties, no logprobs).
Responses follow OpenAI's ``chat.completion`` and ``chat.completion.chunk``
objects, ``usage`` included (for streams, in a last chunk when
``stream_options.include_usage`` is true, as OpenAI does).

What this protects against: oversized or malformed requests reaching the
engine, and request text leaking through error messages. What it does not:
decide what a caller may ask (that is authentication, rate limiting and the
output filter).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sealtune.core import strict_json
from sealtune.errors import MalformedJSON
from sealtune.serve.engines.base import Message, Sampling

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_KNOWN = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                    "top_p", "stream", "stream_options", "stop", "seed", "user", "metadata"})
#: Accepted only at these (neutral) values.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,), "frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0), "logprobs": (False,),
    "store": (False,), "parallel_tool_calls": (False, True), "response_format": ({"type": "text"},),
}
MAX_MESSAGES = 512
MAX_STOP = 4


class BadRequest(Exception):
    """An invalid request (400, or 404 for an unknown model); the message holds no values."""

    def __init__(self, message: str, *, param: str | None = None,
                 code: str = "invalid_request", status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status

    def body(self) -> bytes:
        """The OpenAI error object."""
        return error_body(self.message, "invalid_request_error", code=self.code, param=self.param)


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat completion request."""

    model: str
    messages: tuple[Message, ...]
    sampling: Sampling
    stream: bool
    include_usage: bool
    stop: tuple[str, ...]


def _content(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if (not isinstance(part, dict) or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)):
                raise BadRequest("only text content parts are supported",
                                 param=f"{where}.content[{i}]")
            parts.append(part["text"])
        return "".join(parts)
    raise BadRequest("content must be a string or a list of text parts", param=f"{where}.content")


def _messages(value: Any) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise BadRequest("messages must be a non-empty list", param="messages")
    if len(value) > MAX_MESSAGES:
        raise BadRequest(f"at most {MAX_MESSAGES} messages", param="messages")
    out = []
    for i, msg in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise BadRequest("each message needs a role: system, developer, user, assistant "
                             "or tool", param=f"{where}.role")
        out.append(Message(msg["role"], _content(msg.get("content"), where)))
    return tuple(out)


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float,
            *, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a number", param=name)
    if value > high or value < low or (low_open and value == low):
        raise BadRequest(f"{name} must be in {'(' if low_open else '['}{low}, {high}]",
                         param=name)
    return float(value)


def _max_tokens(body: dict[str, Any], default: int, limit: int) -> int:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return min(default, limit)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise BadRequest(f"max_tokens must be an integer in [1, {limit}]", param="max_tokens")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or len(stops) > MAX_STOP
            or not all(isinstance(s, str) and s for s in stops)):
        raise BadRequest(f"stop must be a non-empty string or a list of up to {MAX_STOP}",
                         param="stop")
    return tuple(stops)


def _check_keys(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in _KNOWN or value is None:
            continue
        if key not in _NEUTRAL:
            raise BadRequest("unsupported parameter", param=key, code="unsupported_parameter")
        if value not in _NEUTRAL[key]:
            raise BadRequest("unsupported value for this parameter", param=key,
                             code="unsupported_value")


def load_json(raw: bytes) -> Any:
    """Parse a request body with :func:`sealtune.core.strict_json.loads`.

    Raises:
        BadRequest: ``invalid_json``, ``json_too_deep`` (nested deeper than
            :data:`~sealtune.core.strict_json.MAX_DEPTH`) or ``invalid_unicode``
            (not UTF-8, or a lone surrogate escape).
    """
    try:
        return strict_json.loads(raw)
    except MalformedJSON as exc:
        raise BadRequest(f"the body is not usable JSON: {exc.message}", code=exc.code) from None


def parse_chat_request(raw: bytes, *, default_max_tokens: int, max_tokens_limit: int
                       ) -> ChatRequest:
    """Parse and validate a chat completion request body.

    Raises:
        BadRequest: not JSON (``invalid_json``, ``json_too_deep``, ``invalid_unicode``),
            or a parameter is missing, unsupported or out of range.
    """
    body = load_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    _check_keys(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required", param="model")
    stream = body.get("stream") or False
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise BadRequest("stream must be a boolean and stream_options an object", param="stream")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("seed must be an integer", param="seed")
    sampling = Sampling(max_tokens=_max_tokens(body, default_max_tokens, max_tokens_limit),
                        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
                        seed=seed)
    return ChatRequest(model, _messages(body.get("messages")), sampling, stream,
                       bool(options.get("include_usage")), _stop(body.get("stop")))


# -- responses --------------------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_body(message: str, type_: str, *, code: str | None = None,
               param: str | None = None) -> bytes:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return _dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def new_id() -> str:
    """A fresh ``chatcmpl-...`` id."""
    return "chatcmpl-" + secrets.token_hex(12)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def completion_body(*, rid: str, created: int, model: str, text: str, finish: str,
                    prompt_tokens: int, completion_tokens: int) -> bytes:
    """A ``chat.completion`` object."""
    return _dumps({
        "id": rid, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                             "refusal": None},
                     "logprobs": None, "finish_reason": finish}],
        "usage": _usage(prompt_tokens, completion_tokens)})


@dataclass(frozen=True)
class ChunkMaker:
    """Builds the server-sent events of one streamed completion."""

    rid: str
    created: int
    model: str

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        obj = {"id": self.rid, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model, "system_fingerprint": None, "choices": choices, **extra}
        return b"data: " + _dumps(obj) + b"\n\n"

    def delta(self, delta: dict[str, str], finish: str | None = None) -> bytes:
        """One ``choices[0].delta`` event."""
        return self._event([{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}])

    def usage(self, prompt: int, completion: int) -> bytes:
        """The final usage event (``choices`` empty)."""
        return self._event([], usage=_usage(prompt, completion))

    @staticmethod
    def error(message: str, type_: str, code: str) -> bytes:
        """An error event (the ``openai`` client raises ``APIError`` on it)."""
        return b"data: " + error_body(message, type_, code=code) + b"\n\n"


DONE = b"data: [DONE]\n\n"


class StopCutter:
    """Cuts generated text at the first stop sequence, across pieces of a stream."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._buf = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        """Return text safe to release; sets :attr:`hit` when a stop sequence appears."""
        if not self._stops:
            return piece
        self._buf += piece
        found = [i for i in (self._buf.find(s) for s in self._stops) if i >= 0]
        if found:
            self.hit = True
            out, self._buf = self._buf[: min(found)], ""
            return out
        cut = len(self._buf) - self._hold
        if cut <= 0:
            return ""
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return out

    def flush(self) -> str:
        """The held-back rest (no stop sequence in it)."""
        out, self._buf = self._buf, ""
        return out
