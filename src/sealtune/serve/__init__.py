"""Confidential serving: an attested, end-to-end encrypted, OpenAI-compatible server.

The public surface (loaded lazily: ``import sealtune.serve`` loads neither
fastapi, uvicorn nor torch until a name that needs them is used):

* the server: :class:`ServeOptions`, :func:`build_server`, :func:`run_server`,
  :func:`load_engine` (:mod:`sealtune.serve.launch`, what ``sealtune serve``
  calls), :func:`create_app` with :class:`ServeSettings`,
  :class:`ConnectionLimits` and :class:`FilterPolicy` to build the app
  oneself, and the engines (:func:`make_engine`, :mod:`sealtune.serve.engines`);
* credentials: :func:`create_api_key`, :func:`revoke_api_key`,
  :func:`issue_token`, :func:`open_key_store`, :func:`token_service`,
  :func:`token_keys`, :func:`rotate_token_key`, :func:`retire_token_key`
  (:mod:`sealtune.serve.token_admin`, what ``sealtune auth`` calls) over
  :class:`KeyStore`, :class:`TokenService` and :class:`Authenticator`.

Formats: ``docs/formats/e2e-v1.md`` (the encryption) and
``docs/formats/e2e-http-v1.md`` (its HTTP mapping).

What the server protects against: a network attacker, TLS-terminating load
balancers and logging proxies see only ciphertext of prompts and responses
(end-to-end encrypted mode; ``--encrypted-only`` refuses anything else); API
callers are authenticated, limited to their role, rate-limited and audited in
the ledger; logs never hold prompt or response text. What it does not: the
server process and its host see plaintext unless it runs in a real TEE, and
the ``dev-software`` attestation provider proves nothing about hardware
isolation (only possession of its key); sizes, timing and callers of
requests are visible.

Using the server needs the ``serve`` extra (fastapi, uvicorn, pyjwt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.serve.app import create_app, route_keys
    from sealtune.serve.auth import Authenticator, RateLimit
    from sealtune.serve.engines import make_engine
    from sealtune.serve.filter import FilterPolicy
    from sealtune.serve.keystore import ApiKeyInfo, KeyStore, public_record
    from sealtune.serve.launch import (
        LoadedEngine,
        ServeOptions,
        Server,
        build_server,
        load_engine,
        run_server,
    )
    from sealtune.serve.settings import ConnectionLimits, ServeSettings
    from sealtune.serve.token_admin import (
        create_api_key,
        issue_token,
        open_key_store,
        retire_token_key,
        revoke_api_key,
        rotate_token_key,
        token_keys,
        token_service,
    )
    from sealtune.serve.tokens import MAX_TTL, IssuedToken, TokenKeySet, TokenService

__all__ = [
    "MAX_TTL",
    "ApiKeyInfo",
    "Authenticator",
    "ConnectionLimits",
    "FilterPolicy",
    "IssuedToken",
    "KeyStore",
    "LoadedEngine",
    "RateLimit",
    "ServeOptions",
    "ServeSettings",
    "Server",
    "TokenKeySet",
    "TokenService",
    "build_server",
    "create_api_key",
    "create_app",
    "issue_token",
    "load_engine",
    "make_engine",
    "open_key_store",
    "public_record",
    "retire_token_key",
    "revoke_api_key",
    "rotate_token_key",
    "route_keys",
    "run_server",
    "token_keys",
    "token_service",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("create_app", "route_keys"), "sealtune.serve.app"),
    **dict.fromkeys(("Authenticator", "RateLimit"), "sealtune.serve.auth"),
    "make_engine": "sealtune.serve.engines",
    "FilterPolicy": "sealtune.serve.filter",
    **dict.fromkeys(("ApiKeyInfo", "KeyStore", "public_record"), "sealtune.serve.keystore"),
    **dict.fromkeys(("LoadedEngine", "ServeOptions", "Server", "build_server", "load_engine",
                     "run_server"), "sealtune.serve.launch"),
    **dict.fromkeys(("ConnectionLimits", "ServeSettings"), "sealtune.serve.settings"),
    **dict.fromkeys(("create_api_key", "issue_token", "open_key_store", "retire_token_key",
                     "revoke_api_key", "rotate_token_key", "token_keys", "token_service"),
                    "sealtune.serve.token_admin"),
    **dict.fromkeys(("MAX_TTL", "IssuedToken", "TokenKeySet", "TokenService"),
                    "sealtune.serve.tokens"),
})
