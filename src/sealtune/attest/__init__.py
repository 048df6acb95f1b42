"""Remote attestation (RFC 9334 roles): the server attests, the client verifies.

The public surface (loaded lazily): the verifier's :func:`verify_report`
with :class:`VerificationPolicy` (:func:`load_policy` reads one from a file),
:class:`VerificationResult` and :class:`VerificationFailed`
(:mod:`sealtune.attest.verify`, :mod:`sealtune.attest.policy`); the report
format's :func:`decode_nonce`, :func:`read_report_file`,
:data:`MAX_REPORT_BYTES` (:mod:`sealtune.attest.report`); and the port
:class:`AttestationProvider` with :data:`PROVIDERS`,
:func:`register_provider`, :func:`get_provider` (:mod:`sealtune.attest.base`;
adapters ``dev-software`` = :class:`SoftwareProvider`, ``sev-snp``, ``tdx``).

This package is shared by the server and the light client: it imports only
``core``, ``errors`` and ``cryptography``. What the verification proves and
what it does not is stated in :mod:`sealtune.attest.verify`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.attest.base import (
        PROVIDERS,
        AttestationProvider,
        get_provider,
        register_provider,
    )
    from sealtune.attest.policy import VerificationPolicy, load_policy
    from sealtune.attest.report import MAX_REPORT_BYTES, decode_nonce, read_report_file
    from sealtune.attest.software import SoftwareProvider
    from sealtune.attest.verify import VerificationFailed, VerificationResult, verify_report

__all__ = [
    "MAX_REPORT_BYTES",
    "PROVIDERS",
    "AttestationProvider",
    "SoftwareProvider",
    "VerificationFailed",
    "VerificationPolicy",
    "VerificationResult",
    "decode_nonce",
    "get_provider",
    "load_policy",
    "read_report_file",
    "register_provider",
    "verify_report",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("PROVIDERS", "AttestationProvider", "get_provider", "register_provider"),
                    "sealtune.attest.base"),
    **dict.fromkeys(("VerificationPolicy", "load_policy"), "sealtune.attest.policy"),
    **dict.fromkeys(("MAX_REPORT_BYTES", "decode_nonce", "read_report_file"),
                    "sealtune.attest.report"),
    "SoftwareProvider": "sealtune.attest.software",
    **dict.fromkeys(("VerificationFailed", "VerificationResult", "verify_report"),
                    "sealtune.attest.verify"),
})
