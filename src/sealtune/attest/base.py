"""The AttestationProvider port and its registry.

A provider produces *evidence* that binds ``report_data`` (64 bytes, see
:func:`report_data`) to the platform it runs on. ``dev-software`` signs with
an Ed25519 key and is NOT a TEE: it proves only that the holder of that key
produced the report. Real-TEE providers (AMD SEV-SNP, Intel TDX) read
hardware evidence through the kernel's configfs-tsm interface; they are
labelled ``untested_on_hardware`` until they have run on such hardware.

What binding protects against: a report replayed to another client (the
client's nonce is inside), a substituted server key (the key configurations
are inside), a swapped code/model/config measurement or issue time (the
claims are inside). What it does not: it says nothing about *who* may hold
the attestation key (that is the verifier's trust in the platform's roots).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

REPORT_DATA_LABEL = b"sealtune/attestation/v1 report-data"


def report_data(key_config: bytes, nonce: bytes, *, claims: bytes = b"") -> bytes:
    """The 64 bytes a provider must bind.

    ``SHA-512(label || u32 len || key_config || u32 len || nonce || u32 len || claims)``,
    lengths big-endian. ``key_config`` is the RFC 9458 §3.2 key configuration
    list, ``nonce`` the client's nonce (empty when none was given; a given
    nonce is never empty), ``claims`` the canonical JSON of the report's other
    claims (version, platform, measurement, issue time; see
    ``docs/formats/attestation-v1.md``).
    """
    h = hashlib.sha512()
    h.update(REPORT_DATA_LABEL)
    for part in (key_config, nonce, claims):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


@dataclass(frozen=True)
class Evidence:
    """Platform evidence as produced by a provider.

    Attributes:
        platform: ``dev-software``, ``sev-snp`` or ``tdx``.
        payload: provider-specific JSON-serialisable evidence (base64 for binary).
        is_tee: whether the platform claims hardware isolation (False for dev-software).
    """

    platform: str
    payload: dict[str, Any]
    is_tee: bool


@dataclass(frozen=True)
class Check:
    """One verification step and its outcome, in words a user can act on.

    Attributes:
        name: a stable identifier (``report-data``, ``snp-signature``, ...).
        ok: whether the step passed.
        explanation: what was checked and what was found (never secrets).
    """

    name: str
    ok: bool
    explanation: str


@runtime_checkable
class AttestationProvider(Protocol):
    """Produces evidence binding ``report_data`` on this platform.

    Attributes:
        platform: the registry name (``dev-software``, ``sev-snp``, ``tdx``).
        is_tee: whether the evidence comes from hardware isolation.
        untested_on_hardware: True until the provider has run on real hardware.
    """

    platform: str
    is_tee: bool
    untested_on_hardware: bool

    def evidence(self, report_data: bytes) -> Evidence:
        """Return evidence whose report-data field equals ``report_data`` (64 bytes)."""
        ...


ProviderFactory = Callable[..., AttestationProvider]
PROVIDERS: dict[str, ProviderFactory] = {}


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Register a provider by platform name; duplicates are refused."""
    if name in PROVIDERS:
        raise ValueError(f"attestation provider {name!r} is already registered")
    PROVIDERS[name] = factory


def _lazy(module: str, attr: str) -> ProviderFactory:
    """A factory that imports its module only when a provider is made."""

    def factory(**options: Any) -> AttestationProvider:
        cls: ProviderFactory = getattr(importlib.import_module(module), attr)
        return cls(**options)

    factory.__qualname__ = f"{module}.{attr}"
    return factory


def get_provider(name: str, **options: Any) -> AttestationProvider:
    """Make the provider registered as ``name``.

    Raises:
        AttestationError: no provider of that name (the message lists them).
    """
    from sealtune.errors import AttestationError

    if name not in PROVIDERS:
        raise AttestationError(f"unknown attestation provider {name!r}",
                               hint="use one of: " + ", ".join(sorted(PROVIDERS)))
    return PROVIDERS[name](**options)


register_provider("dev-software", _lazy("sealtune.attest.software", "SoftwareProvider"))
register_provider("sev-snp", _lazy("sealtune.attest.snp", "SnpProvider"))
register_provider("tdx", _lazy("sealtune.attest.tdx", "TdxProvider"))
