"""The verifying client: attested, end-to-end encrypted chat completions (light install).

The public surface: :class:`SealtuneClient` (an ``openai.OpenAI`` over the
encrypting transport), :class:`E2ETransport` / :class:`AsyncE2ETransport`
(``httpx`` transports for any ``httpx`` client), :class:`DevAttestationWarning`,
and ``sealtune proxy`` (:func:`make_proxy`, :func:`run_proxy`:
:mod:`sealtune.client.proxy`) for tools that cannot be changed. Formats:
``docs/formats/e2e-http-v1.md``.

What it guarantees: prompts leave this machine only encrypted (HPKE, RFC
9180) to a server key bound into an attestation report that this client
verified against its policy, with a fresh nonce, before sending anything;
responses are authenticated as the answer to that request and checked
complete (tampering, reordering, truncation raise
:class:`~sealtune.errors.IntegrityError`); it never falls back to plaintext.
What it does not: ``dev-software`` attestation (development only, accepted
only with ``allow_dev_attestation=True`` and then with a warning) proves no
hardware isolation; a compromised server process sees plaintext; which
route is called, by which credential, and the sizes and timing of requests,
responses and stream events are visible on the path. Routes without a body
(``GET /v1/models``, ``/healthz``) pass through in plaintext: they carry no
prompt data.

This package never imports :mod:`sealtune.serve`, torch or a web server; the
``openai`` package is imported only for :class:`SealtuneClient`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach
from sealtune.client.transport import AsyncE2ETransport, DevAttestationWarning, E2ETransport

if TYPE_CHECKING:
    from sealtune.client.proxy import ProxyServer, make_proxy
    from sealtune.client.proxy import serve as run_proxy
    from sealtune.client.sdk import SealtuneClient

__all__ = [
    "AsyncE2ETransport",
    "DevAttestationWarning",
    "E2ETransport",
    "ProxyServer",
    "SealtuneClient",
    "make_proxy",
    "run_proxy",
]

# SealtuneClient imports openai, the proxy an HTTP server: each only when asked for.
__getattr__, __dir__ = attach(__name__, {
    "SealtuneClient": "sealtune.client.sdk",
    **dict.fromkeys(("ProxyServer", "make_proxy"), "sealtune.client.proxy"),
    "run_proxy": "sealtune.client.proxy:serve",
})
