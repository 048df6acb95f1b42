"""Confidential serving: an attested, end-to-end encrypted, OpenAI-compatible server.

The public surface: :func:`create_app` (the FastAPI app), :class:`ServeSettings`,
the auth objects (:class:`~sealtune.serve.auth.Authenticator`,
:class:`~sealtune.serve.keystore.KeyStore`, :class:`~sealtune.serve.auth.TokenService`)
and the engines (:mod:`sealtune.serve.engines`). The CLI (``sealtune serve``,
``sealtune auth ...``) calls the same API. Formats: ``docs/formats/e2e-v1.md``
(the encryption) and ``docs/formats/e2e-http-v1.md`` (its HTTP mapping).

What the server protects against: a network attacker, TLS-terminating load
balancers and logging proxies see only ciphertext of prompts and responses
(end-to-end encrypted mode; ``--encrypted-only`` refuses anything else); API
callers are authenticated, limited to their role, rate-limited and audited in
the ledger; logs never hold prompt or response text. What it does not: the
server process and its host see plaintext unless it runs in a real TEE, and
the ``dev-software`` attestation provider proves nothing about hardware
isolation (only possession of its key); sizes, timing and callers of
requests are visible.

Importing this package needs the ``serve`` extra (fastapi, uvicorn, pyjwt).
"""

from sealtune.serve.app import create_app, route_keys
from sealtune.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "route_keys"]
