"""The end-to-end encryption protocol of confidential serving (format e2e-v1).

Prompts and responses travel sealed between the client SDK and the server
process, so that a network attacker, a TLS-terminating load balancer or a
logging proxy sees only ciphertext. The byte-exact specification is
``docs/formats/e2e-v1.md``; in short it is Oblivious HTTP (RFC 9458) with
its own labels:

* the server publishes an RFC 9458 §3 **key configuration** (:class:`KeyConfig`)
  through its attestation report;
* a **request** is ``key_id | kem_id | kdf_id | aead_id | enc | ciphertext``,
  sealed under a fresh HPKE context (RFC 9180, X25519 / HKDF-SHA256 /
  AES-256-GCM) for each request, exactly as RFC 9458 §4.3;
* a **response** is ``response_nonce | ciphertext`` under a key and nonce
  derived from that context's exporter, exactly as RFC 9458 §4.4;
* **streamed** requests and responses are sealed chunk by chunk as in
  draft-ietf-ohai-chunked-ohttp: varint length prefixes, counter nonces, and
  a final chunk marked by a zero length and the AAD ``"final"``.

The labels are ``sealtune/e2e-v1 request`` (``response``, ``chunked
request``, ``chunked response``) instead of OHTTP's ``message/bhttp ...``:
the content is not Binary HTTP, and distinct labels keep a sealtune message
from ever being accepted as an OHTTP one, or the reverse.

What this protects against: reading or altering prompts and responses in
transit; truncating, reordering, duplicating, dropping or appending chunks of
a stream; splicing chunks or responses between requests (every request has
its own keys); a captured request replayed to the server (each key remembers
the requests it opened: :class:`ReplayError`); a client using a retired
server key (:class:`StaleKeyError` tells it to re-attest). Failures are
:class:`~sealtune.errors.IntegrityError` with no detail. What it does not:
the server process sees plaintext (that is what attestation is for); sizes
and timing of messages and chunks are visible; plaintext of chunks opened
before a stream fails has already been returned, so a caller must treat a
stream as incomplete until ``finish()`` returns.

This module is pure: no I/O and no clock (times are passed in); randomness
comes from the operating system's CSPRNG.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sealtune.core.hazmat import hpke
from sealtune.errors import AttestationError, IntegrityError, UsageError

REQUEST_LABEL = b"sealtune/e2e-v1 request"
RESPONSE_LABEL = b"sealtune/e2e-v1 response"
CHUNKED_REQUEST_LABEL = b"sealtune/e2e-v1 chunked request"
CHUNKED_RESPONSE_LABEL = b"sealtune/e2e-v1 chunked response"
#: The AAD that marks the final chunk of a stream.
FINAL_AAD = b"final"
#: Largest plaintext in one chunk (the chunked-OHTTP draft's 2^14).
MAX_CHUNK_SIZE = 16384
#: Request header: key id (1), KEM id (2), KDF id (2), AEAD id (2).
HEADER_SIZE = 7
#: How long a rotated-out key is still accepted by default, in seconds.
DEFAULT_GRACE_SECONDS = 600.0
#: Requests one server key opens (and remembers, against replay) before it must rotate.
DEFAULT_REPLAY_CAPACITY = 250_000
# Per-stream ceilings well inside AES-GCM's margins (2^36 bytes, 2^32 chunks).
_MAX_STREAM_BYTES = 1 << 36
_MAX_STREAM_CHUNKS = 1 << 32

_REATTEST = (
    "fetch GET /v1/attestation again, verify it, and seal the request to the "
    "key configuration it returns"
)
_RESPONSE_HINT = "discard any partial output and retry the request"


class StaleKeyError(AttestationError):
    """The request names a server key that the server does not (or no longer) hold."""


class ReplayError(IntegrityError):
    """A request whose encapsulated key this server has already opened (a replay)."""


class KeyConfigError(AttestationError):
    """A server key configuration is malformed or offers nothing this client speaks."""


@dataclass(frozen=True)
class _Profile:
    """A suite and its four labels; ``_V1`` is the only one on the wire."""

    suite: hpke.Suite
    request: bytes
    response: bytes
    chunked_request: bytes
    chunked_response: bytes

    @property
    def nonce_size(self) -> int:
        """Length of the response nonce: max(Nn, Nk)."""
        return max(hpke.N_N, self.suite.n_k)


_V1 = _Profile(hpke.SUITE, REQUEST_LABEL, RESPONSE_LABEL, CHUNKED_REQUEST_LABEL,
              CHUNKED_RESPONSE_LABEL)


def _varint(value: int) -> bytes:
    """QUIC variable-length integer (RFC 9000 §16), shortest form."""
    if value < 1 << 6:
        return bytes((value,))
    if value < 1 << 14:
        return struct.pack(">H", value | 0x4000)
    if value < 1 << 30:
        return struct.pack(">I", value | 0x8000_0000)
    return struct.pack(">Q", value | 0xC000_0000_0000_0000)


def _read_varint(buf: bytearray) -> tuple[int, int] | None:
    """Return ``(value, bytes used)`` from the front of ``buf``, or None if incomplete."""
    if not buf:
        return None
    size = 1 << (buf[0] >> 6)
    if len(buf) < size:
        return None
    value = int.from_bytes(buf[:size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, size


# -- key configuration (RFC 9458 §3) ----------------------------------------------------------


@dataclass(frozen=True)
class KeyConfig:
    """One RFC 9458 §3.1 key configuration.

    Attributes:
        key_id: the server's 8-bit key identifier.
        kem_id: the HPKE KEM (only DHKEM(X25519, HKDF-SHA256), 0x0020).
        public_key: the raw 32-byte X25519 public key.
        suites: the offered ``(kdf_id, aead_id)`` pairs, in the server's order.
    """

    key_id: int
    kem_id: int
    public_key: bytes
    suites: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        ok = (0 <= self.key_id <= 0xFF and self.kem_id == hpke.KEM_ID
              and len(self.public_key) == hpke.N_PK and 0 < len(self.suites) < 0x4000
              and len(set(self.suites)) == len(self.suites)
              and all(0 <= i <= 0xFFFF for pair in self.suites for i in pair))
        if not ok:
            raise KeyConfigError("the server key configuration is malformed",
                                 hint=_REATTEST)

    def encode(self) -> bytes:
        """Return the RFC 9458 §3.1 encoding."""
        algs = b"".join(struct.pack(">HH", kdf, aead) for kdf, aead in self.suites)
        return (struct.pack(">BH", self.key_id, self.kem_id) + self.public_key
                + struct.pack(">H", len(algs)) + algs)

    @classmethod
    def decode(cls, data: bytes) -> KeyConfig:
        """Parse one key configuration; the whole of ``data`` must be consumed.

        Raises:
            KeyConfigError: malformed, trailing bytes, or a KEM other than X25519.
        """
        fixed = 3 + hpke.N_PK + 2
        if len(data) < fixed or struct.unpack_from(">H", data, 1)[0] != hpke.KEM_ID:
            raise KeyConfigError("the server key configuration is malformed or not X25519",
                                 hint=_REATTEST)
        (length,) = struct.unpack_from(">H", data, fixed - 2)
        if length % 4 or len(data) != fixed + length:
            raise KeyConfigError("the server key configuration is malformed", hint=_REATTEST)
        pairs = tuple(struct.iter_unpack(">HH", data[fixed:]))
        return cls(data[0], hpke.KEM_ID, bytes(data[3 : 3 + hpke.N_PK]), pairs)

    def supports(self) -> bool:
        """Whether this configuration offers sealtune's suite (HKDF-SHA256, AES-256-GCM)."""
        return self._offers(_V1)

    def _offers(self, profile: _Profile) -> bool:
        return (self.kem_id == profile.suite.kem_id
                and (profile.suite.kdf_id, profile.suite.aead_id) in self.suites)


def encode_key_configs(configs: list[KeyConfig] | tuple[KeyConfig, ...]) -> bytes:
    """Encode ``application/ohttp-keys`` (RFC 9458 §3.2): u16 length + config, repeated."""
    return b"".join(struct.pack(">H", len(c := cfg.encode())) + c for cfg in configs)


def decode_key_configs(data: bytes) -> tuple[KeyConfig, ...]:
    """Decode ``application/ohttp-keys``, skipping configurations for other KEMs.

    Raises:
        KeyConfigError: the framing is malformed or no configuration is usable.
    """
    configs, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise KeyConfigError("the server key configuration list is malformed",
                                 hint=_REATTEST)
        (length,) = struct.unpack_from(">H", data, pos)
        body = data[pos + 2 : pos + 2 + length]
        if len(body) != length or length < 3:
            raise KeyConfigError("the server key configuration list is malformed",
                                 hint=_REATTEST)
        if struct.unpack_from(">H", body, 1)[0] == hpke.KEM_ID:  # RFC 9458 §3.2: skip others
            configs.append(KeyConfig.decode(body))
        pos += 2 + length
    if not configs:
        raise KeyConfigError("the server offers no X25519 key configuration", hint=_REATTEST)
    return tuple(configs)


def select_key_config(configs: list[KeyConfig] | tuple[KeyConfig, ...]) -> KeyConfig:
    """Return the first configuration that offers sealtune's suite.

    Raises:
        KeyConfigError: none does (never a fall-back to plaintext).
    """
    for config in configs:
        if config.supports():
            return config
    raise KeyConfigError("the server offers no cipher suite this client supports "
                         "(X25519, HKDF-SHA256, AES-256-GCM)",
                         hint="upgrade the client or the server so that both speak e2e-v1")


# -- chunk streams (draft-ietf-ohai-chunked-ohttp) ----------------------------------------------


def _check_chunk_size(size: int) -> int:
    if not 0 < size <= MAX_CHUNK_SIZE:
        raise UsageError(f"max_chunk_size must be 1..{MAX_CHUNK_SIZE}")
    return size


class _ChunkWriter:
    """Seals ``prefix | (varint len, chunk)* | 0x00 | final chunk``, split at ``max_chunk_size``."""

    def __init__(self, prefix: bytes, max_chunk_size: int) -> None:
        _check_chunk_size(max_chunk_size)
        self._prefix = prefix
        self._max = max_chunk_size
        self._chunks = 0
        self._bytes = 0
        self._closed = False

    def _seal_one(self, aad: bytes, chunk: bytes) -> bytes:
        raise NotImplementedError

    def _next(self, aad: bytes, chunk: bytes) -> bytes:
        self._chunks += 1
        self._bytes += len(chunk)
        if self._chunks > _MAX_STREAM_CHUNKS or self._bytes > _MAX_STREAM_BYTES:
            self._closed = True
            raise UsageError("the stream is too long for one key",
                             hint="split the content over several requests")
        return self._seal_one(aad, chunk)

    def seal(self, data: bytes) -> bytes:
        """Seal ``data`` as one or more non-final chunks; return the bytes to send.

        The first output of a stream also carries its prefix (the request
        header or the response nonce). Empty ``data`` seals no chunk.

        Raises:
            UsageError: the stream is already finished, or too long.
        """
        if self._closed:
            raise UsageError("the encrypted stream is already finished")
        frames, self._prefix = [self._prefix], b""
        for start in range(0, len(data), self._max):
            sealed = self._next(b"", data[start : start + self._max])
            frames += (_varint(len(sealed)), sealed)
        return b"".join(frames)

    def seal_final(self, data: bytes = b"") -> bytes:
        """Seal ``data`` and end the stream with the final chunk; return the bytes to send.

        Raises:
            UsageError: the stream is already finished, or too long.
        """
        last = (len(data) - 1) // self._max * self._max if data else 0
        head = self.seal(data[:last])
        sealed = self._next(FINAL_AAD, data[last:])
        self._closed = True
        return head + b"\x00" + sealed


_PREFIX, _CHUNKS, _FINAL, _DONE, _FAILED = range(5)


class _ChunkReader:
    """Incremental parser and opener of a chunk stream; fails closed and stays failed."""

    _what = "stream"
    _hint = _RESPONSE_HINT

    def __init__(self, prefix_size: int, max_chunk_size: int) -> None:
        self._buf = bytearray()
        self._prefix_size = prefix_size
        self._max_sealed = _check_chunk_size(max_chunk_size) + hpke.N_T
        self._state = _PREFIX

    def _on_prefix(self, prefix: bytes) -> None:
        raise NotImplementedError

    def _open_one(self, aad: bytes, sealed: bytes) -> bytes:
        raise NotImplementedError

    def _error(self, message: str = "did not authenticate") -> IntegrityError:
        return IntegrityError(f"the encrypted {self._what} {message}", hint=self._hint)

    def _open(self, aad: bytes, sealed: bytes) -> bytes:
        try:
            return self._open_one(aad, sealed)
        except InvalidTag:
            raise self._error() from None

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the stream; return the plaintext of every chunk completed.

        Raises:
            IntegrityError: a chunk does not authenticate, is out of order or
                too large, or the stream already failed.
        """
        if self._state in (_DONE, _FAILED):
            raise self._error("was already finished or failed")
        self._buf += data
        out: list[bytes] = []
        try:
            self._drain(out)
        except BaseException:
            self._state = _FAILED
            raise
        return b"".join(out)

    def _drain(self, out: list[bytes]) -> None:
        buf = self._buf
        while True:
            if self._state == _PREFIX:
                if len(buf) < self._prefix_size:
                    return
                prefix = bytes(buf[: self._prefix_size])
                del buf[: self._prefix_size]
                self._on_prefix(prefix)
                self._state = _CHUNKS
                continue
            if self._state == _FINAL:
                if len(buf) > self._max_sealed:
                    raise self._error("has an oversized final chunk")
                return
            parsed = _read_varint(buf)
            if parsed is None:
                return
            length, used = parsed
            if length == 0:
                del buf[:used]
                self._state = _FINAL
                continue
            if not hpke.N_T <= length <= self._max_sealed:
                raise self._error("has a malformed chunk")
            if len(buf) < used + length:
                return
            sealed = bytes(buf[used : used + length])
            del buf[: used + length]
            out.append(self._open(b"", sealed))

    def _finish(self) -> bytes:
        state, self._state = self._state, _FAILED
        if state in (_DONE, _FAILED):
            raise self._error("was already finished or failed")
        if state != _FINAL:
            raise self._error("ended before its final chunk (truncated)")
        sealed = bytes(self._buf)
        self._buf.clear()
        plaintext = self._open(FINAL_AAD, sealed)
        self._state = _DONE
        return plaintext


def _response_key(ctx: hpke.SenderContext | hpke.RecipientContext, profile: _Profile,
                  label: bytes, enc: bytes, nonce: bytes) -> tuple[hpke.Aead, int]:
    """RFC 9458 §4.4: the response AEAD and its nonce (as an int, for counters)."""
    secret = ctx.export(label, profile.nonce_size)
    prk = hpke.extract(enc + nonce, secret)
    key = hpke.expand(prk, b"key", profile.suite.n_k)
    return hpke.Aead(key), int.from_bytes(hpke.expand(prk, b"nonce", hpke.N_N), "big")


class ResponseStreamSealer(_ChunkWriter):
    """Server side of a streamed response: chunk nonce = response nonce XOR counter."""

    def __init__(self, aead: hpke.Aead, base_nonce: int, prefix: bytes,
                 max_chunk_size: int) -> None:
        super().__init__(prefix, max_chunk_size)
        self._aead = aead
        self._base_nonce = base_nonce
        self._counter = 0

    def _seal_one(self, aad: bytes, chunk: bytes) -> bytes:
        nonce = (self._base_nonce ^ self._counter).to_bytes(hpke.N_N, "big")
        self._counter += 1
        return self._aead.seal(nonce, aad, chunk)


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


# -- client side ----------------------------------------------------------------------------


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


# -- server side ----------------------------------------------------------------------------


class ServerContext:
    """The server's state for one opened request: answers it exactly once."""

    __slots__ = ("_answered", "_ctx", "_enc", "_profile")

    def __init__(self, ctx: hpke.RecipientContext, enc: bytes, profile: _Profile) -> None:
        self._ctx, self._enc, self._profile = ctx, enc, profile
        self._answered = False

    def _answer(self, label: bytes, nonce: bytes | None) -> tuple[hpke.Aead, int, bytes]:
        if self._answered:
            raise UsageError("this request was already answered",
                             hint="a request context seals exactly one response")
        self._answered = True
        nonce = os.urandom(self._profile.nonce_size) if nonce is None else nonce
        aead, base = _response_key(self._ctx, self._profile, label, self._enc, nonce)
        return aead, base, nonce

    def seal_response(self, response: bytes) -> bytes:
        """Seal a whole response with a fresh random response nonce (RFC 9458 §4.4)."""
        return self._seal_response(response)

    def _seal_response(self, response: bytes, *, nonce: bytes | None = None) -> bytes:
        aead, base, nonce = self._answer(self._profile.response, nonce)
        return nonce + aead.seal(base.to_bytes(hpke.N_N, "big"), b"", response)

    def response_stream(self, *, max_chunk_size: int = MAX_CHUNK_SIZE) -> ResponseStreamSealer:
        """Return a sealer for a streamed response (fresh random response nonce)."""
        return self._response_stream(max_chunk_size=max_chunk_size)

    def _response_stream(self, *, max_chunk_size: int = MAX_CHUNK_SIZE,
                         nonce: bytes | None = None) -> ResponseStreamSealer:
        aead, base, nonce = self._answer(self._profile.chunked_response, nonce)
        return ResponseStreamSealer(aead, base, nonce, max_chunk_size)


@dataclass(frozen=True)
class _ServerKey:
    config: KeyConfig
    private_key: X25519PrivateKey
    created: float
    #: Every ``enc`` this key has opened (the replay cache; dropped with the key).
    seen: set[bytes] = field(default_factory=set, repr=False, compare=False)


class ServerKeys:
    """The server's HPKE keys: one per boot, rotated on schedule, with a grace window.

    Pure: every method that depends on time takes ``now`` (seconds on any
    clock the caller uses consistently). After :meth:`rotate`, the previous
    key is still accepted for ``grace_seconds``; older keys are dropped, and a
    request under one raises :class:`StaleKeyError`. Opening requests may run
    concurrently; :meth:`rotate` should be serialised by the caller.

    **Replay cache.** Each key remembers the encapsulated key (``enc``) of
    every request it opened; a request that authenticates but whose ``enc``
    was seen raises :class:`ReplayError`. A legitimate client never repeats
    an ``enc`` (it is a fresh ephemeral public key), so this refuses a
    captured request replayed to the server, for as long as the key lives:
    the cache is dropped with the key, and a request under a dropped key is
    stale anyway, so there is no window in which a replay is accepted. Memory
    is bounded: a key that has opened ``replay_capacity`` requests opens no
    more (:class:`StaleKeyError`, so the client re-attests) and
    :meth:`rotation_due` turns true. Only requests that authenticate are
    remembered, so garbage cannot fill the cache.

    Args:
        now: the current time.
        grace_seconds: how long a rotated-out key still opens requests.
        rotate_after_seconds: key lifetime for :meth:`rotation_due`; None
            means one key for the whole boot (or until the replay cache fills).
        replay_capacity: requests one key opens before it must be rotated
            (about 100 bytes of memory each).
    """

    def __init__(self, *, now: float, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                 rotate_after_seconds: float | None = None,
                 replay_capacity: int = DEFAULT_REPLAY_CAPACITY) -> None:
        if grace_seconds < 0 or (rotate_after_seconds is not None and rotate_after_seconds <= 0):
            raise UsageError("grace_seconds must be >= 0 and rotate_after_seconds > 0")
        if replay_capacity < 1:
            raise UsageError("replay_capacity must be at least 1")
        self._profile = _V1
        self._grace = grace_seconds
        self._rotate_after = rotate_after_seconds
        self._replay_capacity = replay_capacity
        self._seen_lock = threading.Lock()
        self._current = self._make(secrets.randbelow(256), hpke.generate_private_key(), now)
        self._previous: _ServerKey | None = None
        self._retired_at = 0.0

    @classmethod
    def _from_private_key(cls, private_key: X25519PrivateKey, *, key_id: int, now: float,
                          profile: _Profile = _V1) -> ServerKeys:
        """Known-answer tests only: a server holding one given key."""
        keys = cls(now=now)
        keys._profile = profile
        keys._current = keys._make(key_id, private_key, now)
        return keys

    def _make(self, key_id: int, private_key: X25519PrivateKey, now: float) -> _ServerKey:
        s = self._profile.suite
        config = KeyConfig(key_id, s.kem_id, hpke.public_bytes(private_key),
                           ((s.kdf_id, s.aead_id),))
        return _ServerKey(config, private_key, now)

    def __repr__(self) -> str:
        return f"ServerKeys(current key id {self._current.config.key_id})"

    @property
    def current(self) -> KeyConfig:
        """The key configuration new requests should use."""
        return self._current.config

    def key_configs(self, *, now: float) -> tuple[KeyConfig, ...]:
        """Every configuration still accepted at ``now``, the current one first."""
        previous = self._live_previous(now)
        return (self.current,) if previous is None else (self.current, previous.config)

    def rotation_due(self, *, now: float) -> bool:
        """Whether the current key outlived ``rotate_after_seconds`` or filled its replay cache."""
        return ((self._rotate_after is not None
                 and now - self._current.created >= self._rotate_after)
                or len(self._current.seen) >= self._replay_capacity)

    def _remember(self, key: _ServerKey, enc: bytes) -> None:
        """Record an authenticated request's ``enc``; refuse a replay or a full key."""
        with self._seen_lock:
            if enc in key.seen:
                raise ReplayError("this encrypted request was already received (a replay)",
                                  hint="a client seals every request afresh; if this was "
                                       "not a retry of yours, something on the path "
                                       "replays traffic")
            if len(key.seen) >= self._replay_capacity:
                raise StaleKeyError(f"server key id {key.config.key_id} has opened as many "
                                    "requests as it may and is being rotated",
                                    hint=_REATTEST)
            key.seen.add(enc)

    def rotate(self, *, now: float) -> KeyConfig:
        """Make a new current key; the old one is accepted for the grace window.

        Returns:
            The new current configuration (republish the attestation report).
        """
        key_id = (self._current.config.key_id + 1) % 256
        self._previous, self._retired_at = self._current, now
        self._current = self._make(key_id, hpke.generate_private_key(), now)
        return self._current.config

    def _live_previous(self, now: float) -> _ServerKey | None:
        if self._previous is not None and now < self._retired_at + self._grace:
            return self._previous
        return None

    def _key_for(self, header: bytes, now: float) -> _ServerKey:
        key_id, kem_id, kdf_id, aead_id = struct.unpack(">BHHH", header)
        s = self._profile.suite
        if (kem_id, kdf_id, aead_id) != (s.kem_id, s.kdf_id, s.aead_id):
            raise IntegrityError("the encrypted request names a cipher suite this server "
                                 "does not offer", hint=_REATTEST)
        for key in (self._current, self._live_previous(now)):
            if key is not None and key.config.key_id == key_id:
                return key
        raise StaleKeyError(f"the request is sealed to server key id {key_id}, which this "
                            "server does not hold (it restarted or rotated its key)",
                            hint=_REATTEST)

    def _recipient(self, head: bytes, label: bytes, now: float
                   ) -> tuple[_ServerKey, ServerContext]:
        key = self._key_for(head[:HEADER_SIZE], now)
        enc = head[HEADER_SIZE:]
        try:
            ctx = hpke.setup_base_recipient(enc, key.private_key,
                                            label + b"\x00" + head[:HEADER_SIZE],
                                            suite=self._profile.suite)
        except ValueError:
            raise IntegrityError("the encrypted request is malformed", hint=_REATTEST) from None
        return key, ServerContext(ctx, enc, self._profile)

    def open_request(self, data: bytes, *, now: float) -> tuple[bytes, ServerContext]:
        """Decapsulate a whole (non-streamed) request.

        Returns:
            ``(plaintext request, context)``; answer with the context.

        Raises:
            StaleKeyError: the request uses a key this server no longer holds
                (or one that has opened its ``replay_capacity`` of requests).
            ReplayError: the request authenticates but was opened before.
            IntegrityError: the request is malformed or does not authenticate.
        """
        head_size = HEADER_SIZE + hpke.N_ENC
        if len(data) < head_size + hpke.N_T:
            raise IntegrityError("the encrypted request is malformed", hint=_REATTEST)
        key, server = self._recipient(data[:head_size], self._profile.request, now)
        try:
            plaintext = server._ctx.open(b"", data[head_size:])
        except InvalidTag:
            raise IntegrityError("the encrypted request did not authenticate",
                                 hint="it was altered in transit, or sealed to a server key "
                                      "that changed; " + _REATTEST) from None
        self._remember(key, server._enc)
        return plaintext, server

    def open_chunked_request(self, *, now: float,
                             max_chunk_size: int = MAX_CHUNK_SIZE) -> ChunkedRequestOpener:
        """Return an opener for a streamed request."""
        return ChunkedRequestOpener(self, now, max_chunk_size)


class ChunkedRequestOpener(_ChunkReader):
    """Server side of a streamed request; :meth:`finish` hands over the context to answer."""

    _what = "request stream"
    _hint = "it was altered or truncated in transit; the client should send it again"

    def __init__(self, keys: ServerKeys, now: float, max_chunk_size: int) -> None:
        super().__init__(HEADER_SIZE + hpke.N_ENC, max_chunk_size)
        self._keys, self._now = keys, now
        self._key: _ServerKey | None = None
        self._server: ServerContext | None = None

    def _on_prefix(self, prefix: bytes) -> None:
        self._key, self._server = self._keys._recipient(
            prefix, self._keys._profile.chunked_request, self._now)

    def _open_one(self, aad: bytes, sealed: bytes) -> bytes:
        assert self._server is not None and self._key is not None
        plaintext = self._server._ctx.open(aad, sealed)
        if self._server._ctx.seq == 1:  # the first chunk authenticated: remember the request
            self._keys._remember(self._key, self._server._enc)
        return plaintext

    def finish(self) -> tuple[bytes, ServerContext]:
        """End of the stream: open the final chunk.

        Returns:
            ``(final plaintext, context)``: the request is complete only now,
            and only now can it be answered.

        Raises:
            IntegrityError: the stream was truncated or the final chunk is bad.
        """
        plaintext = self._finish()
        assert self._server is not None
        return plaintext, self._server
