"""The client side of e2e-v1: seal requests to a server key, open their responses.

What this protects against: a response that was altered, truncated, or
belongs to another request (every request has its own HPKE context, and its
:class:`ClientContext` opens only that request's response); a prepared
sender context reused across requests (:class:`RequestSealer` hands each to
exactly one). What it does not: check that the key configuration is the
server's (verify the attestation report first), or hide sizes and timing.
"""

from __future__ import annotations

import struct
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sealtune.core.hazmat import hpke
from sealtune.core.protocol._framing import (
    _REATTEST,
    _RESPONSE_HINT,
    _V1,
    HEADER_SIZE,
    MAX_CHUNK_SIZE,
    _ChunkReader,
    _ChunkWriter,
    _Profile,
    _response_key,
)
from sealtune.core.protocol.errors import KeyConfigError
from sealtune.core.protocol.keyconfig import KeyConfig
from sealtune.errors import IntegrityError


class ResponseStreamOpener(_ChunkReader):
    """Client side of a streamed response; call :meth:`feed` per piece, then :meth:`finish`."""

    _what = "response stream"

    def __init__(self, ctx: hpke.SenderContext, profile: _Profile, enc: bytes,
                 max_chunk_size: int) -> None:
        super().__init__(profile.nonce_size, max_chunk_size)
        self._ctx, self._profile, self._enc = ctx, profile, enc
        self._aead: hpke.Aead | None = None
        self._base_nonce = 0
        self._counter = 0

    def _on_prefix(self, prefix: bytes) -> None:
        self._aead, self._base_nonce = _response_key(
            self._ctx, self._profile, self._profile.chunked_response, self._enc, prefix)

    def _open_one(self, aad: bytes, sealed: bytes) -> bytes:
        assert self._aead is not None
        nonce = (self._base_nonce ^ self._counter).to_bytes(hpke.N_N, "big")
        plaintext = self._aead.open(nonce, aad, sealed)
        self._counter += 1
        return plaintext

    def finish(self) -> bytes:
        """End of the stream: open the final chunk and return its plaintext.

        Only after this returns is the response known to be complete.

        Raises:
            IntegrityError: the stream was truncated or the final chunk is bad.
        """
        return self._finish()


class ClientContext:
    """The client's state for one request: opens that request's response only."""

    __slots__ = ("_ctx", "_enc", "_profile")

    def __init__(self, ctx: hpke.SenderContext, enc: bytes, profile: _Profile) -> None:
        self._ctx, self._enc, self._profile = ctx, enc, profile

    def open_response(self, data: bytes) -> bytes:
        """Open a whole (non-streamed) encrypted response.

        Raises:
            IntegrityError: it was altered or belongs to another request.
        """
        size = self._profile.nonce_size
        if len(data) < size + hpke.N_T:
            raise IntegrityError("the encrypted response is malformed", hint=_RESPONSE_HINT)
        aead, nonce = _response_key(self._ctx, self._profile, self._profile.response,
                                    self._enc, data[:size])
        try:
            return aead.open(nonce.to_bytes(hpke.N_N, "big"), b"", data[size:])
        except InvalidTag:
            raise IntegrityError("the encrypted response did not authenticate",
                                 hint=_RESPONSE_HINT) from None

    def response_stream(self, *, max_chunk_size: int = MAX_CHUNK_SIZE) -> ResponseStreamOpener:
        """Return an opener for this request's streamed response."""
        return ResponseStreamOpener(self._ctx, self._profile, self._enc, max_chunk_size)


def _setup_sender(config: KeyConfig, label: bytes, profile: _Profile,
                  sk_e: X25519PrivateKey | None) -> tuple[bytes, hpke.SenderContext]:
    if not config._offers(profile):
        raise KeyConfigError("the server key configuration does not offer "
                             "X25519 / HKDF-SHA256 / AES-256-GCM", hint=_REATTEST)
    s = profile.suite
    header = struct.pack(">BHHH", config.key_id, s.kem_id, s.kdf_id, s.aead_id)
    try:
        enc, ctx = hpke.setup_base_sender(config.public_key, label + b"\x00" + header,
                                          suite=s, _sk_e=sk_e)
    except ValueError:
        raise KeyConfigError("the server public key is invalid", hint=_REATTEST) from None
    return header + enc, ctx


def seal_request(config: KeyConfig, request: bytes) -> tuple[bytes, ClientContext]:
    """Encapsulate ``request`` to the server key in ``config`` (RFC 9458 §4.3).

    Returns:
        ``(encapsulated request, context)``; keep the context to open the response.

    Raises:
        KeyConfigError: the configuration does not offer sealtune's suite.
    """
    return _seal_request(config, request)


def _seal_request(config: KeyConfig, request: bytes, *, profile: _Profile = _V1,
                  sk_e: X25519PrivateKey | None = None) -> tuple[bytes, ClientContext]:
    head, ctx = _setup_sender(config, profile.request, profile, sk_e)
    enc = head[HEADER_SIZE:]
    return head + ctx.seal(b"", request), ClientContext(ctx, enc, profile)


class RequestSealer:
    """Seals requests to one key configuration, with the next HPKE context set up ahead.

    Setting up a sender context (a fresh X25519 key pair, one Diffie-Hellman,
    the key schedule) is most of a request's client-side cost, and right
    after an idle wait it runs from cold caches. :meth:`prepare` does it off
    the critical path (a client calls it while it waits for a response);
    :meth:`seal` takes the prepared context, or sets one up if none is ready.
    The result is byte-for-byte what :func:`seal_request` produces.

    What this protects against: reuse. A prepared context is handed to
    exactly one request (taken under a lock, so concurrent callers never
    share one) and at most one waits at a time. What it does not: a prepared
    ephemeral private key lives in this process's memory until the next
    request, like the context of a request in flight.

    Args:
        config: the server key configuration (from a verified attestation report).

    Raises:
        KeyConfigError: the configuration does not offer sealtune's suite.
    """

    def __init__(self, config: KeyConfig) -> None:
        if not config._offers(_V1):
            raise KeyConfigError("the server key configuration does not offer "
                                 "X25519 / HKDF-SHA256 / AES-256-GCM", hint=_REATTEST)
        self.config = config
        self._ready: tuple[bytes, hpke.SenderContext] | None = None
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Set up the next request's context now, unless one is ready already."""
        if self._ready is not None:
            return
        ready = _setup_sender(self.config, _V1.request, _V1, None)
        with self._lock:
            if self._ready is None:
                self._ready = ready

    def seal(self, request: bytes) -> tuple[bytes, ClientContext]:
        """Encapsulate ``request`` (as :func:`seal_request`), using the prepared context once."""
        with self._lock:
            ready, self._ready = self._ready, None
        head, ctx = ready or _setup_sender(self.config, _V1.request, _V1, None)
        return head + ctx.seal(b"", request), ClientContext(ctx, head[HEADER_SIZE:], _V1)


class ChunkedRequestSealer(_ChunkWriter):
    """Client side of a streamed request: chunks sealed in order by one HPKE context.

    Args:
        config: the server's key configuration (from its verified attestation).
        max_chunk_size: plaintext bytes per chunk; larger input is split.

    Attributes:
        context: opens this request's response.

    Raises:
        KeyConfigError: the configuration does not offer sealtune's suite.
    """

    def __init__(self, config: KeyConfig, *, max_chunk_size: int = MAX_CHUNK_SIZE,
                 _profile: _Profile = _V1, _sk_e: X25519PrivateKey | None = None) -> None:
        head, self._ctx = _setup_sender(config, _profile.chunked_request, _profile, _sk_e)
        super().__init__(head, max_chunk_size)
        self.context = ClientContext(self._ctx, head[HEADER_SIZE:], _profile)

    def _seal_one(self, aad: bytes, chunk: bytes) -> bytes:
        return self._ctx.seal(aad, chunk)

