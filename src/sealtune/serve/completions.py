"""Chat completions, the same for plaintext and end-to-end encrypted requests.

:class:`Completions` parses a request body, runs the engine, cuts at stop
sequences and applies the output filter, producing either a whole answer
(status + JSON) or server-sent events; the app then sends those as they are
or seals them (``serve.e2e``). The streaming helpers hand chunks from the
engine to the event loop without a worker-thread hop per chunk.

What this protects against: engine exceptions carrying text (they become a
generic ``engine_error`` with the class name in the request log only),
unfiltered output in either mode, and (with a monitor) regurgitated training
text or a canary in a streamed answer (the monitor's stream guard redacts or
blocks it before it is sent, holding back a few tokens). What it does not: it trusts the engine to
produce the text it was asked for; it does not limit what a prompt may ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool

from sealtune.serve.engines.base import Engine, RequestTooLarge, TokenStream
from sealtune.serve.filter import OutputFilter, StreamFilter
from sealtune.serve.logs import RequestRecord
from sealtune.serve.openai_api import (
    DONE,
    BadRequest,
    ChatRequest,
    ChunkMaker,
    StopCutter,
    completion_body,
    error_body,
    new_id,
    parse_chat_request,
)
from sealtune.serve.settings import ServeSettings

if TYPE_CHECKING:
    from sealtune.monitor.streaming import StreamGuard
    from sealtune.serve.watch import Served

_T = TypeVar("_T")


@dataclass
class Answer:
    """A whole answer (status + JSON body) or a stream of server-sent events."""

    status: int
    body: bytes = b""
    events: Iterator[bytes] | None = None


class Completions:
    """Answers chat completion requests with one engine and one output filter."""

    def __init__(self, settings: ServeSettings, engine: Engine,
                 served: Served | None = None) -> None:
        self.settings, self.engine = settings, engine
        self.filter = OutputFilter(settings.filter)
        # The monitor's checks of this engine's model version (redact or block an answer
        # before it is sent: a whole one, and a streamed one as it is generated).
        self.served = served

    def body(self, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
        """A streamed body: pumped by one thread for blocking engines, inline otherwise."""
        return threaded_iter(chunks) if self.engine.blocking else _inline_iter(chunks)

    async def answer(self, raw: bytes, rec: RequestRecord,
                     texts: dict[str, Any] | None = None) -> Answer:
        """Parse, generate and filter; the same for plaintext and encrypted requests.

        ``texts`` (the request's, dropped when it ends) receives the last user
        message and the generated text for the monitor's detectors.
        """
        texts = {} if texts is None else texts
        texts["served"] = self.served  # the version that answers, for the detectors
        s = self.settings
        try:
            req = parse_chat_request(raw, default_max_tokens=s.default_max_tokens,
                                     max_tokens_limit=s.max_tokens_limit)
            if req.model != self.engine.model_id:
                raise BadRequest("the requested model is not served here; GET /v1/models "
                                 "lists the model", param="model", code="model_not_found",
                                 status=404)
        except BadRequest as exc:
            rec.error = exc.code
            return Answer(exc.status, exc.body())
        rec.stream = req.stream
        texts["prompt"] = next((m.content for m in reversed(req.messages) if m.role == "user"),
                               None)
        rid, created = new_id(), int(time.time())
        call = run_in_threadpool if self.engine.blocking else _inline
        try:
            if req.stream:
                stream = await call(self.engine.stream, req.messages, sampling=req.sampling)
                return Answer(200, events=self._events(stream, req, rid, created, rec, texts))
            done = await call(self.engine.generate, req.messages, sampling=req.sampling)
        except RequestTooLarge as exc:
            rec.error = "context_length_exceeded"
            return Answer(400, error_body(str(exc), "invalid_request_error",
                                          code="context_length_exceeded", param="messages"))
        except Exception as exc:  # the engine's message could quote text: class name only
            rec.error = type(exc).__name__
            return Answer(500, error_body("generation failed", "server_error",
                                          code="engine_error"))
        cutter = StopCutter(req.stop)
        text = cutter.feed(done.text)
        text = text if cutter.hit else text + cutter.flush()
        texts["output"], texts["first"] = text, time.time()
        finish: str = "stop" if cutter.hit else done.finish_reason
        checked = text if self.served is None else self.served.guard(text)
        if checked is None:  # the monitor policy blocks this answer
            rec.error, checked, finish = "output_blocked", "", "content_filter"
        counts: Counter[str] = Counter()
        text = self.filter.apply(checked, counts)
        rec.prompt_tokens, rec.completion_tokens = done.prompt_tokens, done.completion_tokens
        rec.filtered = dict(counts)
        return Answer(200, completion_body(
            rid=rid, created=created, model=req.model, text=text,
            finish=finish, prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens))

    def _events(self, stream: TokenStream, req: ChatRequest, rid: str, created: int,
                rec: RequestRecord, texts: dict[str, Any]) -> Iterator[bytes]:
        """The server-sent events of one streamed completion (without ``[DONE]``)."""
        make, pieces = ChunkMaker(rid, created, req.model), []
        out = _StreamOut(StopCutter(req.stop), None if self.served is None
                         else self.served.stream_guard(), self.filter.stream())
        try:
            yield make.delta({"role": "assistant", "content": ""})
            for piece in stream:
                pieces.append(piece)  # for the detectors, after the fact (memory only)
                text = out.feed(piece)
                if text:
                    texts.setdefault("first", time.time())  # time to first token
                    yield make.delta({"content": text})
                if out.ended:
                    break
            rest = out.finish()
            if rest:
                texts.setdefault("first", time.time())
                yield make.delta({"content": rest})
            if out.blocked:  # the monitor policy blocks this answer: cut where the span starts
                rec.error = "output_blocked"
            yield make.delta({}, out.finish_reason(stream.finish_reason))
            if req.include_usage:
                yield make.usage(stream.prompt_tokens, stream.completion_tokens)
        except Exception as exc:  # class name only; the client gets an error event
            rec.error = type(exc).__name__
            yield ChunkMaker.error("generation failed", "server_error", "engine_error")
        finally:
            stream.close()
            texts["output"] = "".join(pieces)
            pieces.clear()
            rec.prompt_tokens, rec.completion_tokens = stream.prompt_tokens, \
                stream.completion_tokens
            rec.filtered = dict(out.filter.counts)


class _StreamOut:
    """A streamed answer on its way out: stop sequences, then the monitor's guard (redact or
    block what it reports, a few tokens behind the engine), then the output filter."""

    def __init__(self, cutter: StopCutter, guard: StreamGuard | None,
                 flt: StreamFilter) -> None:
        self.cutter, self.guard, self.filter = cutter, guard, flt

    @property
    def blocked(self) -> bool:
        return self.guard is not None and self.guard.blocked

    @property
    def ended(self) -> bool:
        """A stop sequence was reached, or the guard blocked the answer: read no more."""
        return self.cutter.hit or self.blocked

    def feed(self, piece: str) -> str:
        text = self.cutter.feed(piece)
        if self.guard is not None:
            text = self.guard.feed(text)
        return self.filter.feed(text)

    def finish(self) -> str:
        """The held-back rest, checked and filtered."""
        text = "" if self.cutter.hit else self.cutter.flush()
        if self.guard is not None:
            text = self.guard.feed(text) + self.guard.flush()
        return self.filter.feed(text) + self.filter.flush()

    def finish_reason(self, engine: str) -> str:
        if self.blocked:
            return "content_filter"
        return "stop" if self.cutter.hit else engine


async def _inline(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Call a non-blocking engine method on the event loop (no worker-thread hop)."""
    return fn(*args, **kwargs)


async def _inline_iter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    try:
        for chunk in chunks:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


_END = object()


async def threaded_iter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Iterate a blocking iterator on one thread of its own, handing chunks to the loop.

    One thread per stream instead of one worker-thread hop per chunk: fewer
    handoffs between the generation thread, the pump and the event loop, so
    chunks (and the first token) leave sooner. The pump stops at the next
    chunk once the client is gone, and closes the iterator on its own thread.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    gone = threading.Event()

    def hand(item: Any, exc: BaseException | None = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            loop.call_soon_threadsafe(queue.put_nowait, (item, exc))

    def pump() -> None:
        try:
            for chunk in chunks:
                if gone.is_set():
                    break
                hand(chunk)
        except Exception as exc:  # re-raised on the loop, where the floor catches it
            hand(_END, exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            hand(_END)

    threading.Thread(target=pump, name="sealtune-stream", daemon=True).start()
    try:
        while True:
            item, exc = await queue.get()
            if exc is not None:
                raise exc
            if item is _END:
                return
            yield item
    finally:
        gone.set()


def plain_sse(events: Iterator[bytes]) -> Iterator[bytes]:
    """Plaintext server-sent events: the events, then ``data: [DONE]``."""
    try:
        yield from events
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    yield DONE
