"""The ``echo`` engine: answers with the last user message, for protocol benchmarks and tests.

It isolates the cost of everything around generation (HTTP, authentication,
end-to-end encryption, the output filter) and makes planted-string tests
possible: whatever a test sends comes back, so the test can look for it in
every file the server wrote. A "token" is a run of non-space characters with
the spaces before it, so counts are deterministic.

What this protects against and what it does not: nothing; it is not a model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from sealtune.serve.engines.base import (
    Completion,
    Engine,
    FinishReason,
    Message,
    Sampling,
    TokenStream,
    register_engine,
)

_TOKEN = re.compile(r"\s*\S+|\s+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


class EchoEngine:
    """Echoes the content of the last ``user`` message (empty if there is none).

    Args:
        model_id: the name served in ``GET /v1/models``.
    """

    blocking = False

    def __init__(self, *, model_id: str = "echo", **_: object) -> None:
        self.model_id = model_id

    def _answer(self, messages: Sequence[Message], sampling: Sampling
                ) -> tuple[list[str], int, FinishReason]:
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        pieces = _tokens(last)
        prompt = sum(self.count_tokens(m.content) for m in messages)
        if len(pieces) > sampling.max_tokens:
            return pieces[: sampling.max_tokens], prompt, "length"
        return pieces, prompt, "stop"

    def generate(self, messages: Sequence[Message], *, sampling: Sampling) -> Completion:
        """Return the last user message (cut to ``max_tokens`` tokens)."""
        pieces, prompt, finish = self._answer(messages, sampling)
        return Completion("".join(pieces), prompt, len(pieces), finish)

    def stream(self, messages: Sequence[Message], *, sampling: Sampling) -> TokenStream:
        """Yield the last user message token by token."""
        pieces, prompt, finish = self._answer(messages, sampling)
        return _EchoStream(pieces, prompt, finish)

    def count_tokens(self, text: str) -> int:
        """Whitespace-separated runs."""
        return len(_tokens(text))


class _EchoStream(TokenStream):
    def __init__(self, pieces: list[str], prompt: int, finish: FinishReason) -> None:
        super().__init__(self._run(pieces, finish), prompt_tokens=prompt)

    def _run(self, pieces: list[str], finish: FinishReason) -> Iterator[str]:
        for piece in pieces:
            self.completion_tokens += 1
            yield piece
        self.finish_reason = finish


def _factory(**options: object) -> Engine:
    return EchoEngine(**options)  # type: ignore[arg-type]


register_engine("echo", _factory)
