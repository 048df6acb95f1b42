"""The serving configuration (what the attestation report's config digest covers).

What this protects against: a silently different configuration: every field
below that changes the server's behaviour is part of :meth:`ServeSettings.measured`,
whose digest is in the attestation measurement, so a client pinning it
notices. What it does not: settings outside this object (the host, the
network, the workspace's API keys, :class:`ConnectionLimits`) are not measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sealtune.errors import ConfigError
from sealtune.serve.filter import FilterPolicy


@dataclass(frozen=True)
class ServeSettings:
    """How the server behaves.

    Attributes:
        model_id: the served model's name (``model`` in requests).
        model_digest: SHA-256 hex of the model files (see ``serve.model.model_digest``).
        engine: the engine name (``transformers``, ``echo``).
        encrypted_only: refuse plaintext completions (403 and a ledger event).
        filter: the output filter policy.
        default_max_tokens: used when a request names none.
        max_tokens_limit: the most a request may ask for.
        max_body_bytes: the largest request body accepted (413 above).
        report_cache_seconds: how long a report without nonce is reused.
        registry: the registry version served (name, version, signature digest,
            signer), measured so that a client can pin it; None outside the registry.
    """

    model_id: str
    model_digest: str
    engine: str
    encrypted_only: bool = False
    filter: FilterPolicy = field(default_factory=FilterPolicy)
    default_max_tokens: int = 256
    max_tokens_limit: int = 4096
    max_body_bytes: int = 1 << 20
    report_cache_seconds: float = 60.0
    registry: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.default_max_tokens <= self.max_tokens_limit:
            raise ConfigError("serve: default_max_tokens must be in 1..max_tokens_limit")
        if self.max_body_bytes < 1024:
            raise ConfigError("serve: max_body_bytes must be at least 1024")
        if self.report_cache_seconds < 0:
            raise ConfigError("serve: report_cache_seconds must be >= 0")

    def measured(self) -> bytes:
        """Canonical JSON of the behaviour-relevant settings (hashed into the measurement)."""
        doc: dict[str, Any] = {"format": "sealtune-serve-config/v1", "model_id": self.model_id,
               "model_digest": self.model_digest, "engine": self.engine,
               "encrypted_only": self.encrypted_only,
               "filter": {"blocked_terms": sorted(self.filter.blocked_terms),
                          "pii_types": sorted(self.filter.pii_types),
                          "holdback_chars": self.filter.holdback_chars},
               "default_max_tokens": self.default_max_tokens,
               "max_tokens_limit": self.max_tokens_limit, "max_body_bytes": self.max_body_bytes}
        if self.registry is not None:  # absent outside the registry: older pins still hold
            doc["registry"] = self.registry
        return json.dumps(doc, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True).encode("ascii")


#: The most any connection deadline may be configured to (seconds).
MAX_TIMEOUT = 300.0


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take to send a request, and how many connections it may hold.

    Enforced per connection by :mod:`sealtune.serve.connections`; not measured
    (they change no answer, only when a slow or greedy client is cut off).

    Attributes:
        header_timeout: seconds to receive a complete request head, counted from
            the connection (or from the end of the previous response on a kept-alive
            connection): idle and half-sent-header connections close after it.
        body_timeout: seconds to receive the whole body once the head is in.
        max_per_client: open connections one client address may hold (IPv6: one
            /64); the next one gets 429 and is closed.
        max_connections: open connections in all; the next one gets 503 and is
            closed (also kept below the process's file-descriptor limit).
    """

    header_timeout: float = 10.0
    body_timeout: float = 15.0
    max_per_client: int = 256
    max_connections: int = 4096

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            if not 0 < getattr(self, name) <= MAX_TIMEOUT:
                raise ConfigError(f"serve: {name} must be in (0, {MAX_TIMEOUT:g}] seconds")
        if not 1 <= self.max_per_client <= self.max_connections:
            raise ConfigError("serve: max_per_client must be in 1..max_connections")
