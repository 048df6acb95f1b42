"""The generation Engine port, its registry and the helpers every engine shares.

An engine turns chat messages into text, whole (:meth:`Engine.generate`) or
piece by piece (:meth:`Engine.stream`), and counts tokens. The server holds
one engine; everything security-related (authentication, end-to-end
encryption, the output filter, logs) happens in the app around it, so a GPU
engine (vLLM's ``LLM`` / ``AsyncLLMEngine``) fits behind the same three
methods without touching the app.

What this protects against: nothing by itself. Engines see prompts and
responses in plaintext (they run inside the server process, which is what
attestation measures); they must never log, print or persist text, and must
not let an exception carry it (engine errors reach the app and the logs by
class name only). What it does not: isolate one request's data from another
beyond not sharing mutable state between requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length"]
Role = Literal["system", "developer", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    """One chat message (text only).

    Attributes:
        role: ``system``, ``developer``, ``user``, ``assistant`` or ``tool``.
        content: the message text.
    """

    role: str
    content: str


@dataclass(frozen=True)
class Sampling:
    """Generation parameters (validated by the app before they reach an engine).

    Attributes:
        max_tokens: the most new tokens to generate (>= 1).
        temperature: 0 means greedy decoding.
        top_p: nucleus sampling mass in (0, 1].
        seed: a seed for reproducible sampling, or None.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    """A whole generation.

    Attributes:
        text: the generated text.
        prompt_tokens: tokens in the rendered prompt.
        completion_tokens: tokens generated.
        finish_reason: ``stop`` (end of sequence) or ``length`` (hit max_tokens).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


class TokenStream:
    """An iterator of text pieces whose counts are final once it is exhausted.

    Engines subclass it or pass a generator; :meth:`close` stops generation
    early (a client that went away, a stop sequence) and must be cheap and
    idempotent.

    Attributes:
        prompt_tokens: tokens in the rendered prompt (known from the start).
        completion_tokens: tokens generated so far.
        finish_reason: ``stop`` or ``length``, set when the stream ends.
    """

    def __init__(self, pieces: Iterator[str], *, prompt_tokens: int,
                 on_close: Callable[[], None] | None = None) -> None:
        self._pieces = pieces
        self._on_close = on_close
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.finish_reason: FinishReason = "stop"

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop generating; further iteration ends."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


@runtime_checkable
class Engine(Protocol):
    """Generates chat completions for one model.

    Attributes:
        model_id: the name clients use in ``model`` (``GET /v1/models``).
        blocking: whether ``generate``/``stream`` may block for long; the app
            runs blocking engines in worker threads and calls the others
            inline (a thread hop costs more than echoing).
    """

    model_id: str
    blocking: bool

    def generate(self, messages: Sequence[Message], *, sampling: Sampling) -> Completion:
        """Generate a whole completion (blocking; the app runs it in a worker thread)."""
        ...

    def stream(self, messages: Sequence[Message], *, sampling: Sampling) -> TokenStream:
        """Start a generation and return its pieces as they are produced."""
        ...

    def count_tokens(self, text: str) -> int:
        """Count the tokens of ``text`` under this engine's tokenizer."""
        ...


EngineFactory = Callable[..., Engine]
ENGINES: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Register an engine factory by name; duplicates are refused."""
    if name in ENGINES:
        raise ValueError(f"engine {name!r} is already registered")
    ENGINES[name] = factory


def make_engine(name: str, **options: Any) -> Engine:
    """Build the engine registered as ``name``.

    Raises:
        UsageError: no engine of that name.
    """
    # Importing the package registers the built-in engines.
    import sealtune.serve.engines  # noqa: F401
    from sealtune.errors import UsageError

    factory = ENGINES.get(name)
    if factory is None:
        raise UsageError(f"unknown engine {name!r}", hint=f"use one of: {', '.join(ENGINES)}")
    return factory(**options)


class RequestTooLarge(Exception):
    """The prompt plus ``max_tokens`` exceeds the model's context (the caller's fault: 400).

    The message names sizes only, never text.
    """


class EngineFailed(Exception):
    """Generation failed inside the engine; carries the original class name only."""
