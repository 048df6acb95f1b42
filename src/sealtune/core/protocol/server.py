"""The server side of e2e-v1: hold and rotate keys, open requests, seal their responses.

What this protects against: a request under a retired or unknown key
(:class:`StaleKeyError`, so the client re-attests); a captured request
replayed to the server (each key remembers the ``enc`` of every request it
opened: :class:`ReplayError`); an unbounded replay cache (a key that filled
it opens no more and is due for rotation); a request answered twice; a
streamed request answered before its final chunk. What it does not: keep
keys across restarts (one key per boot), serialise :meth:`ServerKeys.rotate`
(the caller does), or hide plaintext from this process.
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
from sealtune.core.protocol._framing import (
    _REATTEST,
    _V1,
    DEFAULT_GRACE_SECONDS,
    DEFAULT_REPLAY_CAPACITY,
    HEADER_SIZE,
    MAX_CHUNK_SIZE,
    _ChunkReader,
    _ChunkWriter,
    _Profile,
    _response_key,
)
from sealtune.core.protocol.errors import ReplayError, StaleKeyError
from sealtune.core.protocol.keyconfig import KeyConfig
from sealtune.errors import IntegrityError, UsageError


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
