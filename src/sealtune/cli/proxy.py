"""``sealtune proxy``: a local OpenAI-compatible proxy that attests and encrypts upstream.

Wire into the main CLI with ``app.command("proxy")(proxy.proxy)``.

What it protects against: see :mod:`sealtune.client.proxy` — prompts leave
this machine only sealed to an attested server key; the proxy refuses to
start (exit 3, ``attestation: ...``) when the server answers and its report
fails verification, and answers 502 when a later one fails. A server that is
not up yet (unreachable, or 5xx) does not stop it: it starts, and attests on
the first request (retrying with back-off for ``--attest-timeout`` seconds,
then 503). What it does not: the local hop is
plaintext, local callers are not authenticated, and ``--allow-dev-attestation``
accepts a server that proves no hardware isolation (it warns).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import err_console
from sealtune.errors import UsageError


def proxy(
    upstream: Annotated[str, typer.Option("--upstream", help="The sealtune server, e.g. "
                                                              "https://host:8443.")],
    port: Annotated[int, typer.Option(help="Local port to listen on.")] = 8080,
    host: Annotated[str, typer.Option(help="Local address (loopback only unless "
                                           "--unsafe-bind-any).")] = "127.0.0.1",
    allow_dev_attestation: Annotated[bool, typer.Option(
        "--allow-dev-attestation", help="Accept dev-software attestation (NOT a TEE; "
                                        "development only).")] = False,
    policy_file: Annotated[Path | None, typer.Option(
        "--policy", help="Verification policy (JSON or YAML).")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="Environment variable holding the API key to send upstream "
                              "(default: forward each caller's Authorization header).")] = None,
    unsafe_bind_any: Annotated[bool, typer.Option(
        "--unsafe-bind-any", help="Allow a non-loopback --host: plaintext prompts would "
                                  "cross that network.")] = False,
    attest_timeout: Annotated[float, typer.Option(
        help="Seconds a request may wait for the server to come up and attest "
             "(exponential back-off), before it gets 503.")] = 30.0,
) -> None:
    """Proxy plaintext OpenAI calls on loopback to an attested, end-to-end encrypted server."""
    from sealtune.attest import VerificationPolicy, load_policy
    from sealtune.client import DevAttestationWarning, make_proxy, run_proxy
    from sealtune.errors import AttestationUnavailable

    policy = load_policy(policy_file) if policy_file else VerificationPolicy()
    if allow_dev_attestation:
        policy = policy.unsafe_allowing_dev_attestation()
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise UsageError(f"--api-key-env {api_key_env}: the variable is not set or empty")
    if unsafe_bind_any:
        err_console.print(f"[yellow]warning:[/] --unsafe-bind-any: plaintext prompts to "
                          f"{host}:{port} cross the network unencrypted")
    server = make_proxy(upstream, policy=policy, host=host, port=port, api_key=api_key,
                        unsafe_bind_any=unsafe_bind_any, attest_timeout=attest_timeout)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DevAttestationWarning)
            result = server.attest()  # AttestationError -> exit 3, "attestation: ..."
        for w in caught:
            err_console.print(f"[yellow]warning:[/] {w.message}")
    except AttestationUnavailable as exc:
        result = None
        err_console.print(f"[yellow]warning:[/] the server is not up yet ({exc.message}): "
                          "attesting on the first request")
    except BaseException:
        server.server_close()
        raise
    # Later re-attestations (after a key rotation) warn once more through warnings.
    warnings.simplefilter("default", DevAttestationWarning)
    if result is not None:
        err_console.print(f"attestation verified: platform {result.platform}"
                          f"{'' if result.is_tee else ' (NOT a TEE)'}, key id(s) "
                          + ", ".join(str(c.key_id) for c in result.key_configs))
        for note in result.warnings:
            err_console.print(f"  note: {note}")
    err_console.print(f"proxy listening on {server.url} -> {server.upstream} "
                      "(chat completions end-to-end encrypted)")
    run_proxy(server)
