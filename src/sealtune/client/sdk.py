"""``SealtuneClient``: the official ``openai.OpenAI`` client over :class:`E2ETransport`.

Everything the OpenAI client offers for chat completions works unchanged
(``client.chat.completions.create(..., stream=True)`` included); underneath,
each request is sealed to a server key from an attestation report verified
against ``policy`` before the first byte of a prompt is sent, and each
response is authenticated and checked complete before it is handed over.

What this protects against and what it does not: see
:mod:`sealtune.client.transport`. In short, prompts and responses are
plaintext only here and inside the attested server process; ``dev-software``
attestation proves no hardware isolation, a compromised server process sees
plaintext, and sizes and timing are visible. The API key travels outside the
encryption (use TLS in front of the server).
"""

from __future__ import annotations

from typing import Any, cast

import httpx
import openai

from sealtune.attest.policy import VerificationPolicy
from sealtune.attest.verify import VerificationResult
from sealtune.client.transport import E2ETransport
from sealtune.errors import UsageError

__all__ = ["SealtuneClient"]

_TIMEOUT = httpx.Timeout(600.0, connect=10.0)


class SealtuneClient(openai.OpenAI):
    """An ``openai.OpenAI`` whose chat completions are attested and end-to-end encrypted.

    Args:
        base_url: the server's API base, e.g. ``http://127.0.0.1:8443/v1``.
        api_key: a sealtune API key or JWT (sent as the bearer credential).
        policy: what the server's attestation must satisfy. The default
            policy refuses ``dev-software``; pass
            ``VerificationPolicy(allow_dev_attestation=True)`` for development
            (a :class:`~sealtune.client.transport.DevAttestationWarning` is
            emitted when such a report is accepted).
        transport: the real ``httpx`` transport underneath (default: a new
            ``httpx.HTTPTransport``), e.g. one with TLS settings.
        http_client: only for ``copy()``/``with_options()``: an ``httpx.Client``
            whose transport is already an :class:`E2ETransport`.
        **kwargs: passed to ``openai.OpenAI`` (``timeout``, ``max_retries``,
            ``default_headers``, ...).

    Raises:
        UsageError: no policy, or an ``http_client`` that does not encrypt.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 policy: VerificationPolicy | None = None,
                 transport: httpx.BaseTransport | None = None,
                 http_client: Any = None, **kwargs: Any) -> None:
        if http_client is None:
            if policy is None:
                raise UsageError("SealtuneClient needs policy=VerificationPolicy(...)",
                                 hint="VerificationPolicy() accepts only real TEEs; "
                                      "allow_dev_attestation=True is for development")
            e2e = E2ETransport(policy, transport=transport)
            http_client = httpx.Client(transport=e2e, timeout=_TIMEOUT)
        else:
            given = getattr(http_client, "_transport", None)
            if not isinstance(given, E2ETransport) or policy is not None or transport is not None:
                raise UsageError("http_client must be an httpx.Client over an E2ETransport "
                                 "(and then policy and transport are not given)",
                                 hint="pass policy= and let SealtuneClient build the client")
            e2e = given
        if base_url is None:
            raise UsageError("SealtuneClient needs base_url, e.g. http://127.0.0.1:8443/v1")
        # openai 3.x types http_client as httpx2.Client; it accepts an httpx.Client too.
        super().__init__(base_url=base_url, api_key=api_key, http_client=cast(Any, http_client),
                         **kwargs)
        self._e2e = e2e

    @property
    def e2e_transport(self) -> E2ETransport:
        """The transport that attests, seals and opens."""
        return self._e2e

    @property
    def last_attestation(self) -> VerificationResult | None:
        """The most recent successful attestation verification (None before the first)."""
        return self._e2e.last_attestation

    def attest(self) -> VerificationResult:
        """Fetch and verify the server's attestation now (it also happens on first use).

        Raises:
            AttestationError: the report failed verification; nothing was sent.
        """
        return self._e2e.attest(str(self.base_url))
