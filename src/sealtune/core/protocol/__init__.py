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


This package is pure: no I/O and no clock (times are passed in); randomness
comes from the operating system's CSPRNG. Its modules: ``_framing`` (wire
constants, varints, chunk streams, the response key), ``keyconfig`` (RFC
9458 §3), ``client`` (sealing requests, opening responses), ``server`` (keys,
replay cache, opening requests, sealing responses) and ``errors``. Import
from here, not from them: this is the public surface. The stream ceilings
``_MAX_STREAM_BYTES`` / ``_MAX_STREAM_CHUNKS`` live in ``_framing`` only (not
re-exported, so patching them here cannot silently do nothing).
"""

from __future__ import annotations

# Public names are listed in ``__all__``. Private names (``_V1``, ``_seal_request``, ...) are
# re-exported as ``X as X`` so that every name the single module offered is still importable
# from here (known-answer tests, benchmarks); so are the base errors it imported.
from sealtune.core.protocol._framing import _CHUNKS as _CHUNKS
from sealtune.core.protocol._framing import _DONE as _DONE
from sealtune.core.protocol._framing import _FAILED as _FAILED
from sealtune.core.protocol._framing import _FINAL as _FINAL
from sealtune.core.protocol._framing import _PREFIX as _PREFIX
from sealtune.core.protocol._framing import _REATTEST as _REATTEST
from sealtune.core.protocol._framing import _RESPONSE_HINT as _RESPONSE_HINT
from sealtune.core.protocol._framing import _V1 as _V1
from sealtune.core.protocol._framing import (
    CHUNKED_REQUEST_LABEL,
    CHUNKED_RESPONSE_LABEL,
    DEFAULT_GRACE_SECONDS,
    DEFAULT_REPLAY_CAPACITY,
    FINAL_AAD,
    HEADER_SIZE,
    MAX_CHUNK_SIZE,
    REQUEST_LABEL,
    RESPONSE_LABEL,
)
from sealtune.core.protocol._framing import _check_chunk_size as _check_chunk_size
from sealtune.core.protocol._framing import _ChunkReader as _ChunkReader
from sealtune.core.protocol._framing import _ChunkWriter as _ChunkWriter
from sealtune.core.protocol._framing import _Profile as _Profile
from sealtune.core.protocol._framing import _read_varint as _read_varint
from sealtune.core.protocol._framing import _response_key as _response_key
from sealtune.core.protocol._framing import _varint as _varint
from sealtune.core.protocol.client import (
    ChunkedRequestSealer,
    ClientContext,
    RequestSealer,
    ResponseStreamOpener,
    seal_request,
)
from sealtune.core.protocol.client import _seal_request as _seal_request
from sealtune.core.protocol.client import _setup_sender as _setup_sender
from sealtune.core.protocol.errors import KeyConfigError, ReplayError, StaleKeyError
from sealtune.core.protocol.keyconfig import (
    KeyConfig,
    decode_key_configs,
    encode_key_configs,
    select_key_config,
)
from sealtune.core.protocol.server import (
    ChunkedRequestOpener,
    ResponseStreamSealer,
    ServerContext,
    ServerKeys,
)
from sealtune.core.protocol.server import _ServerKey as _ServerKey
from sealtune.errors import AttestationError as AttestationError
from sealtune.errors import IntegrityError as IntegrityError
from sealtune.errors import UsageError as UsageError

__all__ = [
    "CHUNKED_REQUEST_LABEL",
    "CHUNKED_RESPONSE_LABEL",
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_REPLAY_CAPACITY",
    "FINAL_AAD",
    "HEADER_SIZE",
    "MAX_CHUNK_SIZE",
    "REQUEST_LABEL",
    "RESPONSE_LABEL",
    "ChunkedRequestOpener",
    "ChunkedRequestSealer",
    "ClientContext",
    "KeyConfig",
    "KeyConfigError",
    "ReplayError",
    "RequestSealer",
    "ResponseStreamOpener",
    "ResponseStreamSealer",
    "ServerContext",
    "ServerKeys",
    "StaleKeyError",
    "decode_key_configs",
    "encode_key_configs",
    "seal_request",
    "select_key_config",
]
