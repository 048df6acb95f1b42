"""The verifying, end-to-end encrypting ``httpx`` transport under the OpenAI client.

:class:`E2ETransport` (sync) and :class:`AsyncE2ETransport` wrap a real
``httpx`` transport and implement the client algorithm of
``docs/formats/e2e-http-v1.md`` §7 for ``POST .../chat/completions``:

1. fetch ``GET .../attestation?nonce=<32 fresh random bytes>`` once per server
   key (cached per server until the server answers ``stale_key``), and verify
   it with :func:`sealtune.attest.verify.verify_report` under the caller's
   :class:`~sealtune.attest.policy.VerificationPolicy` **before** anything is
   sealed or sent;
2. seal the JSON body unchanged with a fresh HPKE context
   (:class:`sealtune.core.protocol.RequestSealer`, which sets up the next
   request's context once this one's answer is in) and send it as
   ``application/sealtune-e2e-request``;
3. open the sealed answer, whole or streamed; a stream is decrypted
   progressively and raises :class:`~sealtune.errors.IntegrityError` at its
   end if the final chunk is missing;
4. on ``stale_key`` (or ``integrity_error``) re-attest and re-seal the same
   request exactly once.

GET, HEAD and OPTIONS requests without a body (``/v1/models``, ``/healthz``,
the attestation itself) pass through in plaintext: they carry no prompt
data. Any other request that is not a chat completion is refused rather
than sent in the clear.

What this guarantees: a prompt leaves the machine only sealed to a server
key bound into an attestation report that passed the policy (with this
client's fresh nonce), and a response is handed over only if it
authenticates as the answer to that very request, complete (a truncated,
reordered or altered stream fails). There is never a plaintext fall-back: a
plaintext answer to an encrypted request is an error.

What it does not: ``dev-software`` attestation (accepted only with
``allow_dev_attestation=True``, and then with a :class:`DevAttestationWarning`)
proves no hardware isolation; a compromised server process sees plaintext
whatever the platform; the route, the credential, sizes and timing of
requests, responses and stream events are visible on the path; and text of a
stream delivered before an error is not known to be complete.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from sealtune.attest.policy import VerificationPolicy
from sealtune.attest.verify import VerificationResult, verify_report
from sealtune.core import strict_json
from sealtune.core.protocol import (
    ClientContext,
    KeyConfig,
    KeyConfigError,
    RequestSealer,
    ResponseStreamOpener,
    select_key_config,
)
from sealtune.errors import (
    AttestationError,
    AttestationUnavailable,
    IntegrityError,
    MalformedJSON,
    UsageError,
)

__all__ = ["E2E_CHUNKED_RESPONSE", "E2E_REQUEST", "E2E_RESPONSE", "AsyncE2ETransport",
           "DevAttestationWarning", "E2ETransport"]

E2E_REQUEST = "application/sealtune-e2e-request"
E2E_RESPONSE = "application/sealtune-e2e-response"
E2E_CHUNKED_RESPONSE = "application/sealtune-e2e-chunked-response"
_CHAT_SUFFIX = "/chat/completions"
_PASS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_REPORT = 1 << 20
_ATTEST_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_MAX_HEAD = 1 << 16
_INNER_MEDIA = frozenset({"application/json", "text/event-stream"})
_RETRY_TYPES = frozenset({"stale_key", "integrity_error"})
_DROP = ("content-length", "content-type", "content-encoding", "transfer-encoding")


class DevAttestationWarning(UserWarning):
    """A ``dev-software`` report was accepted: it is NOT a TEE (development only)."""


@dataclass(frozen=True)
class _Verified:
    result: VerificationResult
    config: KeyConfig
    sealer: RequestSealer


def _media(headers: httpx.Headers) -> str:
    return str(headers.get("content-type", "")).split(";")[0].strip().lower()


def _is_chat(request: httpx.Request) -> bool:
    if request.method == "POST" and request.url.path.endswith(_CHAT_SUFFIX):
        return True
    if request.method in _PASS_METHODS and request.headers.get("content-length", "0") == "0" \
            and "transfer-encoding" not in request.headers:
        return False
    raise UsageError(f"sealtune.client refuses to send {request.method} {request.url.path} in "
                     "plaintext: only chat completions are end-to-end encrypted",
                     hint="call POST .../chat/completions, or use a plain client for routes "
                          "that carry no confidential data")


def _base(url: httpx.URL) -> httpx.URL:
    """The API base (``.../v1``) of a chat completions URL or of a base URL."""
    path = url.path[:-len(_CHAT_SUFFIX)] if url.path.endswith(_CHAT_SUFFIX) else url.path
    return url.copy_with(path=path.rstrip("/") or "/", query=None, fragment=None)


def _error_type(status: int, media: str, raw: bytes) -> str | None:
    if status != 400 or media != "application/json":
        return None
    try:
        error = strict_json.loads(raw).get("error", {})
        kind: object = error.get("type") if isinstance(error, dict) else None
    except (MalformedJSON, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _inner_head(head: bytes) -> tuple[int, str, bytes]:
    """Split ``status SP media LF rest`` (e2e-http-v1 §6.1)."""
    line, sep, rest = head.partition(b"\n")
    try:
        status_text, media = line.decode("ascii").split(" ", 1)
        status = int(status_text)
    except (UnicodeDecodeError, ValueError):
        status, media = 0, ""
    if not sep or len(status_text) != 3 or not 100 <= status <= 599 or media not in _INNER_MEDIA:
        raise IntegrityError("the decrypted response has no valid inner status line",
                             hint="the server does not speak e2e-http-v1; do not trust it")
    return status, media, rest


def _inner_headers(media: str) -> dict[str, str]:
    return {"content-type": media, "cache-control": "no-store"}


class _Core:
    """What the sync and async transports share: verification, sealing, answers (no I/O)."""

    def __init__(self, policy: VerificationPolicy, clock: Callable[[], datetime]) -> None:
        if not isinstance(policy, VerificationPolicy):
            raise UsageError("policy must be a sealtune.attest.policy.VerificationPolicy")
        self.policy, self.clock = policy, clock
        self.cache: dict[str, _Verified] = {}
        self.last: VerificationResult | None = None
        self.lock = threading.Lock()

    def attestation_request(self, url: httpx.URL) -> tuple[httpx.Request, bytes]:
        nonce = os.urandom(32)
        base = _base(url)
        target = base.copy_with(path=base.path.rstrip("/") + "/attestation",
                                params={"nonce": base64.urlsafe_b64encode(nonce).decode()})
        # Bounded: a server that accepts and never answers must not hang the caller.
        return httpx.Request("GET", target, headers={"accept": "application/json"},
                             extensions={"timeout": _ATTEST_TIMEOUT.as_dict()}), nonce

    def accept(self, url: httpx.URL, status: int, raw: bytes, nonce: bytes) -> _Verified:
        """Verify a fetched report; cache and return its key configuration."""
        if status >= 500:  # starting, overloaded or behind a proxy that cannot reach it
            raise AttestationUnavailable(
                f"GET {_base(url).path.rstrip('/')}/attestation answered HTTP {status}",
                hint="the server is not ready; try again shortly")
        if status != 200:
            raise AttestationError(f"GET {_base(url).path.rstrip('/')}/attestation answered "
                                   f"HTTP {status}", hint="check the server URL; do not send "
                                   "data to a server that cannot attest")
        if len(raw) > _MAX_REPORT:
            raise AttestationError("the attestation report is larger than 1 MiB")
        result = verify_report(raw, policy=self.policy, nonce=nonce, now=self.clock())
        config = select_key_config(result.key_configs)
        if result.platform == "dev-software":
            warnings.warn("dev-software attestation accepted because allow_dev_attestation "
                          "is set: it is NOT a TEE and proves no hardware isolation; the "
                          "server's operator and host can read prompts", DevAttestationWarning,
                          stacklevel=4)
        verified = _Verified(result, config, RequestSealer(config))
        self.cache[str(_base(url))] = verified
        self.last = result
        return verified

    def cached(self, url: httpx.URL) -> _Verified | None:
        return self.cache.get(str(_base(url)))

    def forget(self, url: httpx.URL, verified: _Verified) -> None:
        with self.lock:
            if self.cache.get(str(_base(url))) is verified:
                del self.cache[str(_base(url))]

    @staticmethod
    def seal(verified: _Verified, request: httpx.Request,
             body: bytes) -> tuple[httpx.Request, ClientContext]:
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            raise UsageError("compressed request bodies are not supported by e2e-http-v1",
                             hint="send the chat completion body uncompressed")
        sealed, ctx = verified.sealer.seal(body)
        headers = httpx.Headers({k: v for k, v in request.headers.multi_items()
                                 if k.lower() not in _DROP})
        headers["content-type"] = E2E_REQUEST
        return httpx.Request("POST", request.url, headers=headers, content=sealed,
                             extensions=request.extensions), ctx

    @staticmethod
    def refuse_plaintext(status: int, media: str) -> None:
        """Outer answers that must never reach the caller as an answer."""
        sealed = media in (E2E_RESPONSE, E2E_CHUNKED_RESPONSE)
        if (200 <= status < 300 and not sealed) or (sealed and status != 200):
            raise IntegrityError("the server answered an encrypted request with an unsealed "
                                 f"HTTP {status} {media or 'response'}: refused (a downgrade "
                                 "to plaintext is never accepted)",
                                 hint="the server or something on the path is not e2e-http-v1; "
                                      "do not trust it")

    @staticmethod
    def whole(ctx: ClientContext, raw: bytes) -> httpx.Response:
        status, media, body = _inner_head(ctx.open_response(raw))
        return httpx.Response(status, headers=_inner_headers(media), content=body)


class _OpenedStream(httpx.SyncByteStream):
    def __init__(self, first: bytes, rest: Iterator[bytes], opener: ResponseStreamOpener,
                 upstream: httpx.Response, finished: bool, sealer: RequestSealer) -> None:
        self._first, self._rest, self._opener = first, rest, opener
        self._upstream, self._finished, self._sealer = upstream, finished, sealer

    def __iter__(self) -> Iterator[bytes]:
        # Stateful: a second iteration (a client draining the body) resumes, never repeats.
        first, self._first = self._first, b""
        if first:
            yield first
        if self._finished:
            return
        for piece in self._rest:
            out = self._opener.feed(piece)
            if out:
                yield out
        self._finished = True
        tail = self._opener.finish()
        if tail:
            yield tail

    def close(self) -> None:
        self._upstream.close()
        _prepare(self._sealer)


class _AsyncOpenedStream(httpx.AsyncByteStream):
    def __init__(self, first: bytes, rest: AsyncIterator[bytes], opener: ResponseStreamOpener,
                 upstream: httpx.Response, finished: bool, sealer: RequestSealer) -> None:
        self._first, self._rest, self._opener = first, rest, opener
        self._upstream, self._finished, self._sealer = upstream, finished, sealer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Stateful: a second iteration (a client draining the body) resumes, never repeats.
        first, self._first = self._first, b""
        if first:
            yield first
        if self._finished:
            return
        async for piece in self._rest:
            out = self._opener.feed(piece)
            if out:
                yield out
        self._finished = True
        tail = self._opener.finish()
        if tail:
            yield tail

    async def aclose(self) -> None:
        await self._upstream.aclose()
        _prepare(self._sealer)


def _prepare(sealer: RequestSealer) -> None:
    """Set up the next request's HPKE context now that this answer is in (off its path)."""
    with contextlib.suppress(KeyConfigError):  # raised again, with its hint, by the next seal
        sealer.prepare()


def _head_done(head: bytes) -> bool:
    if len(head) > _MAX_HEAD and b"\n" not in head:
        raise IntegrityError("the decrypted response has no inner status line")
    return b"\n" in head


def _now() -> datetime:
    return datetime.now(UTC)


class E2ETransport(httpx.BaseTransport):
    """A sync ``httpx`` transport that attests, seals and opens chat completions.

    Args:
        policy: what an attestation report must satisfy (the defaults refuse
            ``dev-software``).
        transport: the real transport underneath (default ``httpx.HTTPTransport()``).
        clock: the current time, timezone-aware (for report freshness).

    Attributes:
        last_attestation: the most recent successful verification result, or None.
    """

    def __init__(self, policy: VerificationPolicy, *, transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        self._core = _Core(policy, clock)
        self._inner = transport or httpx.HTTPTransport()

    @property
    def last_attestation(self) -> VerificationResult | None:
        return self._core.last

    def attest(self, base_url: str | httpx.URL) -> VerificationResult:
        """Fetch and verify the attestation of the server at ``base_url`` (``.../v1``) now.

        Raises:
            AttestationError: the report failed (``VerificationFailed`` carries every check).
            AttestationUnavailable: the server answered 5xx (not ready: retry later).
        """
        return self._attest(httpx.URL(base_url), fresh=True).result

    def attested(self, base_url: str | httpx.URL) -> bool:
        """Whether a verified key of the server at ``base_url`` is cached (no I/O)."""
        return self._core.cached(httpx.URL(base_url)) is not None

    def _attest(self, url: httpx.URL, *, fresh: bool = False) -> _Verified:
        with self._core.lock:
            hit = None if fresh else self._core.cached(url)
            if hit is not None:  # another thread attested while this one waited
                return hit
            request, nonce = self._core.attestation_request(url)
            response = self._inner.handle_request(request)
            try:
                raw = _read_capped(_raw(response))
            finally:
                response.close()
            return self._core.accept(url, response.status_code, raw, nonce)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not _is_chat(request):
            return self._inner.handle_request(request)
        body = request.read()
        for attempt in (0, 1):
            verified = self._core.cached(request.url) or self._attest(request.url)
            sealed, ctx = self._core.seal(verified, request, body)
            response = self._inner.handle_request(sealed)
            media = _media(response.headers)
            if response.status_code == 400 and media == "application/json":
                raw = b"".join(_raw(response))
                response.close()
                if attempt == 0 and _error_type(400, media, raw) in _RETRY_TYPES:
                    self._core.forget(request.url, verified)
                    continue
                return httpx.Response(400, headers=response.headers, content=raw)
            try:
                self._core.refuse_plaintext(response.status_code, media)
                if media == E2E_RESPONSE:
                    answer = self._core.whole(ctx, b"".join(_raw(response)))
                    _prepare(verified.sealer)
                    return answer
                if media == E2E_CHUNKED_RESPONSE:
                    return self._stream(ctx, response, verified.sealer)
            except BaseException:
                response.close()
                raise
            return response  # a plaintext error (401/403/413/415/429/5xx): hand it over
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _stream(ctx: ClientContext, response: httpx.Response,
                sealer: RequestSealer) -> httpx.Response:
        opener, head, finished = ctx.response_stream(), b"", False
        pieces = _raw(response)
        for piece in pieces:
            head += opener.feed(piece)
            if _head_done(head):
                break
        else:
            head += opener.finish()
            finished = True
        status, media, rest = _inner_head(head)
        stream = _OpenedStream(rest, pieces, opener, response, finished, sealer)
        return httpx.Response(status, headers=_inner_headers(media), stream=stream)

    def close(self) -> None:
        self._inner.close()


class AsyncE2ETransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`E2ETransport` (same arguments and guarantees)."""

    def __init__(self, policy: VerificationPolicy, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        self._core = _Core(policy, clock)
        self._inner = transport or httpx.AsyncHTTPTransport()

    @property
    def last_attestation(self) -> VerificationResult | None:
        return self._core.last

    async def attest(self, base_url: str | httpx.URL) -> VerificationResult:
        """Fetch and verify the attestation of the server at ``base_url`` now."""
        return (await self._attest(httpx.URL(base_url))).result

    async def _attest(self, url: httpx.URL) -> _Verified:
        request, nonce = self._core.attestation_request(url)
        response = await self._inner.handle_async_request(request)
        try:
            raw = b"".join([piece async for piece in _araw(response)])
        finally:
            await response.aclose()
        return self._core.accept(url, response.status_code, raw, nonce)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not _is_chat(request):
            return await self._inner.handle_async_request(request)
        body = await request.aread()
        for attempt in (0, 1):
            verified = self._core.cached(request.url) or await self._attest(request.url)
            sealed, ctx = self._core.seal(verified, request, body)
            response = await self._inner.handle_async_request(sealed)
            media = _media(response.headers)
            if response.status_code == 400 and media == "application/json":
                raw = b"".join([piece async for piece in _araw(response)])
                await response.aclose()
                if attempt == 0 and _error_type(400, media, raw) in _RETRY_TYPES:
                    self._core.forget(request.url, verified)
                    continue
                return httpx.Response(400, headers=response.headers, content=raw)
            try:
                self._core.refuse_plaintext(response.status_code, media)
                if media == E2E_RESPONSE:
                    raw = b"".join([piece async for piece in _araw(response)])
                    answer = self._core.whole(ctx, raw)
                    _prepare(verified.sealer)
                    return answer
                if media == E2E_CHUNKED_RESPONSE:
                    return await self._stream(ctx, response, verified.sealer)
            except BaseException:
                await response.aclose()
                raise
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _stream(ctx: ClientContext, response: httpx.Response,
                      sealer: RequestSealer) -> httpx.Response:
        opener, head, finished = ctx.response_stream(), b"", True
        pieces = _araw(response)
        async for piece in pieces:
            head += opener.feed(piece)
            if _head_done(head):
                finished = False
                break
        if finished:
            head += opener.finish()
        status, media, rest = _inner_head(head)
        stream = _AsyncOpenedStream(rest, pieces, opener, response, finished, sealer)
        return httpx.Response(status, headers=_inner_headers(media), stream=stream)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _raw(response: httpx.Response) -> Iterator[bytes]:
    """The raw body (a response built in memory, e.g. by a mock transport, is read already)."""
    return iter((response.content,)) if response.is_stream_consumed else response.iter_raw()


async def _araw(response: httpx.Response) -> AsyncIterator[bytes]:
    if response.is_stream_consumed:
        yield response.content
        return
    async for piece in response.aiter_raw():
        yield piece


def _read_capped(pieces: Iterator[bytes]) -> bytes:
    out = bytearray()
    for piece in pieces:
        out += piece
        if len(out) > _MAX_REPORT:
            break
    return bytes(out)
