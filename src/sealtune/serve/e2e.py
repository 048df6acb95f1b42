"""The HTTP mapping of end-to-end encryption (e2e-http-v1) on the server side.

Byte-exact specification: ``docs/formats/e2e-http-v1.md``. In short: a
client POSTs an e2e-v1 encapsulated request (``application/sealtune-e2e-request``)
to ``/v1/chat/completions``; once it opens, the answer is always HTTP 200
with a sealed body, ``application/sealtune-e2e-response`` (whole) or
``application/sealtune-e2e-chunked-response`` (streamed), whose plaintext
starts with an inner status line ``"<status> <media type>\\n"`` followed by
the OpenAI body (JSON, or server-sent events ending in ``data: [DONE]``).
A request that does not open gets a plaintext 400 JSON error:
``stale_key`` (re-attest), ``integrity_error``, or ``replayed_request`` (the
same sealed request arrived before); none echoes any byte of the request.

What this protects against: proxies and logs between client and server see
the request line, headers, sizes and timing, never prompts, responses or
the inner status. What it does not: hide which route is called, who calls
(the bearer credential is outside the encryption so that callers are
authenticated and limited before any decryption), or message sizes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sealtune.core.protocol import ServerContext
from sealtune.serve.openai_api import DONE, error_body

REQUEST_MEDIA_TYPE = "application/sealtune-e2e-request"
RESPONSE_MEDIA_TYPE = "application/sealtune-e2e-response"
CHUNKED_RESPONSE_MEDIA_TYPE = "application/sealtune-e2e-chunked-response"
#: Reserved for streamed (chunked) requests; refused with 415 in v1.
CHUNKED_REQUEST_MEDIA_TYPE = "application/sealtune-e2e-chunked-request"

STALE_KEY_MESSAGE = (
    "the request is sealed to a server key this server does not hold (it restarted or "
    "rotated its key): re-attest (GET /v1/attestation, verify the report) and seal the "
    "request to the key configuration it returns")
INTEGRITY_MESSAGE = (
    "the encrypted request is malformed or did not authenticate (altered in transit, or "
    "sealed to a different key); re-attest and send it again")


def inner_head(status: int, media_type: str) -> bytes:
    """The inner status line that starts every sealed response's plaintext."""
    return f"{status:03d} {media_type}\n".encode("ascii")


def stale_key_body(key_id: int | None) -> bytes:
    """The plaintext 400 body for a stale key (type and code ``stale_key``)."""
    error = {"message": STALE_KEY_MESSAGE, "type": "stale_key", "param": None,
             "code": "stale_key", "key_id": key_id}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


REPLAY_MESSAGE = (
    "this encrypted request was already received: the server answers each sealed request "
    "once. A client never sends the same sealed bytes twice (seal the request again); if "
    "you did not, something on the path replays traffic")


def replay_body() -> bytes:
    """The plaintext 400 body for a replayed request (type ``integrity_error``, code
    ``replayed_request``)."""
    return error_body(REPLAY_MESSAGE, "integrity_error", code="replayed_request")


def integrity_body() -> bytes:
    """The plaintext 400 body for a request that does not open."""
    return error_body(INTEGRITY_MESSAGE, "integrity_error", code="integrity_error")


def seal_whole(ctx: ServerContext, status: int, body: bytes,
               media_type: str = "application/json") -> bytes:
    """Seal a whole inner response: ``inner_head(status, media_type) || body``."""
    return ctx.seal_response(inner_head(status, media_type) + body)


def seal_events(ctx: ServerContext, events: Iterator[bytes]) -> Iterator[bytes]:
    """Seal a stream of server-sent events: the head with the first event, then one per chunk.

    The inner plaintext is ``"200 text/event-stream\\n"`` followed by the
    events; the first output carries the response nonce and a chunk holding
    the head and the first event, each later event is one chunk, and the
    final chunk holds ``data: [DONE]``. If ``events`` stops early (the client
    went away) no final chunk is sent, which the client detects as truncation.
    """
    sealer = ctx.response_stream()
    head = inner_head(200, "text/event-stream")
    try:
        for event in events:
            yield sealer.seal(head + event)
            head = b""
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    yield sealer.seal_final(head + DONE)
