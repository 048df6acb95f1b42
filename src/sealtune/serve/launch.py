"""Assemble and run the inference server from typed options: what ``sealtune serve`` does.

:func:`build_server` turns a :class:`ServeOptions` and an open workspace into
a ready :class:`Server`: the engine (``echo``, or ``transformers`` on a
plain or sealed model, a LoRA adapter on its base checked against the digest
recorded at training), the measured model digest, the attestation provider,
the per-boot HPKE keys, the authenticator over the workspace's API keys and
token keys, the output filter, the FastAPI app and the uvicorn options that
enforce the connection limits. :func:`run_server` serves it until
interrupted. The workspace must stay open while it serves (the ledger and
the keyring are read and appended to per request).

What this protects against: an unsafe choice made silently. Turning the PII
output filter off is recorded in the ledger; that, the ``dev-software``
provider (NOT a TEE: its report proves only possession of its key) and
listening beyond loopback without TLS (bearer credentials in the clear) come
back as :attr:`Server.warnings` for the caller to show. What it does not:
see :mod:`sealtune.serve` for what the running server protects.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sealtune.errors import UsageError
from sealtune.serve.settings import ConnectionLimits

if TYPE_CHECKING:
    from sealtune.attest.base import AttestationProvider
    from sealtune.serve.engines.base import Engine
    from sealtune.serve.model import ModelSource
    from sealtune.workspace import Workspace

__all__ = ["LoadedEngine", "ServeOptions", "Server", "build_server", "load_engine", "run_server"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How to serve; every field has the default of ``sealtune serve``'s option of that name.

    Attributes:
        model: a model directory (plain or sealed), or the name of a workspace model.
        base: the base model under a LoRA adapter (default: the base recorded
            at training, checked against its digest).
        host: the address to listen on.
        port: the port.
        attestation: ``dev-software`` (NOT a TEE), ``sev-snp`` or ``tdx``.
        encrypted_only: refuse plaintext completions.
        engine: ``transformers`` or ``echo``.
        blocked_terms: terms the output filter replaces.
        unsafe_no_pii_filter: turn off PII redaction of outputs (recorded).
        rate: requests per second per API key.
        rotate_key_after: rotate the HPKE key after this long (None: one key per boot).
        dev_attestation_key: a PEM Ed25519 key for ``dev-software`` (None: new per boot).
        log_file: the JSON request log (None: stderr).
        ssl_certfile: the TLS certificate (PEM).
        ssl_keyfile: the TLS private key (PEM).
        limits: connection timeouts and counts.
        metrics_port: serve ``/metrics`` on this loopback port (None: no listener).
        metrics_dir: prometheus-client's multiprocess directory (several workers).
        monitor_policy: the monitor policy file (None: the defaults).
        canaries: the release gate's canary secrets, one per line (alerts on hits).
        traces: export OpenTelemetry spans (OTLP; content capture is always off).
        source: the model's files already resolved (a registry version,
            :class:`sealtune.serve.model.ModelSource`); ``model`` then only names it.

    Raises:
        UsageError: a rate that is not a positive number up to 10^6.
    """

    model: str
    base: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    attestation: str = "dev-software"
    encrypted_only: bool = False
    engine: str = "transformers"
    blocked_terms: tuple[str, ...] = ()
    unsafe_no_pii_filter: bool = False
    rate: float = 20.0
    rotate_key_after: timedelta | None = None
    dev_attestation_key: Path | None = None
    log_file: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    metrics_port: int | None = None
    metrics_dir: Path | None = None
    monitor_policy: Path | None = None
    canaries: Path | None = None
    traces: bool = False
    source: ModelSource | None = None

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1e6:
            raise UsageError("--rate must be a positive number of requests per second")


@dataclass(frozen=True)
class Server:
    """A server ready to run (see :func:`run_server`).

    Attributes:
        app: the FastAPI app.
        uvicorn_options: the keyword arguments of ``uvicorn.run`` (host, port,
            TLS, the guarded protocol and its limits).
        model_id: the served model id.
        description: one line for people: model, address, engine, provider.
        warnings: what weakens a guarantee, for the caller to show (plain text).
        log_file: where the JSON request log goes (None: stderr).
    """

    app: Any
    uvicorn_options: dict[str, Any]
    model_id: str
    description: str
    warnings: tuple[str, ...] = ()
    log_file: Path | None = None
    metrics: Any = None
    metrics_port: int | None = None


class LoadedEngine(NamedTuple):
    """An engine with the served model id and the measured model digest (hex)."""

    engine: Engine
    model_id: str
    digest: str


def load_engine(ws: Workspace, *, engine: str, model: str, base: Path | None = None,
                source: ModelSource | None = None) -> LoadedEngine:
    """Build the engine for ``model`` (or the resolved ``source``) and measure it.

    Raises:
        UsageError: ``base`` given for the echo engine or for a whole model.
        ConfigError, IntegrityError: see :func:`sealtune.serve.model.resolve_model`.
    """
    from sealtune.serve.engines import make_engine
    from sealtune.serve.model import (
        adapter_digest,
        is_adapter,
        model_digest,
        resolve_base,
        resolve_model,
    )

    model_id = source.model_id if source is not None else (Path(model).name or model)
    if engine == "echo":
        if base is not None:
            raise UsageError("--base applies to the transformers engine only")
        return LoadedEngine(make_engine("echo", model_id=model_id), model_id,
                            hashlib.sha256(b"sealtune echo engine").hexdigest())
    if source is not None:
        return _load_source(engine, source)
    files = resolve_model(model, keys=ws.keys, workspace_root=ws.root)
    if not is_adapter(files):
        if base is not None:
            raise UsageError(f"--base applies to LoRA adapters; {files.label} is a whole model")
        return LoadedEngine(make_engine(engine, files=files, model_id=model_id), model_id,
                            model_digest(files))
    base_files = resolve_base(Path(files.label), base=base)
    gen = make_engine(engine, files=files, model_id=model_id, base=base_files)
    return LoadedEngine(gen, model_id, adapter_digest(files, base_files))


def _load_source(engine: str, source: ModelSource) -> LoadedEngine:
    """The engine over already resolved files (a registry version, its base if an adapter)."""
    from sealtune.serve.engines import make_engine
    from sealtune.serve.model import adapter_digest, model_digest

    if source.base is None:
        return LoadedEngine(make_engine(engine, files=source.files, model_id=source.model_id),
                            source.model_id, model_digest(source.files))
    gen = make_engine(engine, files=source.files, model_id=source.model_id, base=source.base)
    return LoadedEngine(gen, source.model_id, adapter_digest(source.files, source.base))


def _provider(name: str, dev_key: Path | None) -> tuple[AttestationProvider, str | None]:
    """The attestation provider, and a warning when it is ``dev-software``."""
    from sealtune.attest.base import get_provider

    if name == "dev-software":
        from sealtune.attest.software import SoftwareProvider

        provider = SoftwareProvider.load(dev_key) if dev_key else SoftwareProvider()
        return provider, ("dev-software attestation is NOT a TEE: the report proves only "
                          f"possession of its key (fingerprint {provider.fingerprint})")
    if dev_key is not None:
        raise UsageError("--dev-attestation-key applies to dev-software only")
    return get_provider(name), None


def build_server(ws: Workspace, options: ServeOptions) -> Server:
    """Assemble the server that ``options`` describe, over the open workspace ``ws``.

    Records ``serve.unsafe_no_pii_filter`` in the ledger when the output
    filter is off. The token signing key is created (or a legacy one
    migrated) if needed.

    Raises:
        UsageError, ConfigError: inconsistent or invalid options.
        IntegrityError: a sealed model or its base fails its check.
        BackendUnavailableError: the attestation provider is not available here.
    """
    from sealtune.core.protocol import ServerKeys
    from sealtune.serve.app import create_app
    from sealtune.serve.auth import Authenticator, RateLimit
    from sealtune.serve.connections import uvicorn_options, within_fd_limit
    from sealtune.serve.filter import FilterPolicy
    from sealtune.serve.settings import ServeSettings
    from sealtune.serve.token_admin import open_key_store, token_service

    o = options
    limits = within_fd_limit(o.limits)
    warnings: list[str] = []
    policy = FilterPolicy(blocked_terms=o.blocked_terms,
                          pii_types=() if o.unsafe_no_pii_filter else FilterPolicy().pii_types)
    if o.unsafe_no_pii_filter:
        warnings.append("--no-pii-filter: outputs are not redacted")
        ws.audit("serve.unsafe_no_pii_filter", o.model)
    gen, model_id, digest = load_engine(ws, engine=o.engine, model=o.model, base=o.base,
                                        source=o.source)
    settings = ServeSettings(model_id=model_id, model_digest=digest, engine=o.engine,
                             encrypted_only=o.encrypted_only, filter=policy,
                             registry=o.source.registry if o.source else None)
    rotate = o.rotate_key_after.total_seconds() if o.rotate_key_after else None
    keys = ServerKeys(now=time.time(), rotate_after_seconds=rotate)
    auth = Authenticator(open_key_store(ws), token_service(ws),
                         limit=RateLimit(o.rate, max(1.0, 2 * o.rate)))
    provider, provider_warning = _provider(o.attestation, o.dev_attestation_key)
    warnings += [provider_warning] if provider_warning else []
    watch, responses = _watch(ws, o, settings, auth)
    app = create_app(settings, engine=gen, keys=keys, provider=provider, auth=auth,
                     ledger_audit=ws.ledger.append, watch=watch, responses=responses)
    if o.host not in LOOPBACK and o.ssl_certfile is None:
        warnings.append("listening beyond loopback without TLS: bearer credentials travel in "
                        "the clear (prompts stay protected only in end-to-end encrypted mode)")
    run_options = {"host": o.host, "port": o.port, "access_log": False, "server_header": False,
                   "ssl_certfile": str(o.ssl_certfile) if o.ssl_certfile else None,
                   "ssl_keyfile": str(o.ssl_keyfile) if o.ssl_keyfile else None,
                   **uvicorn_options(limits)}
    description = (f"serving {model_id} on {o.host}:{o.port} ({o.engine}, {o.attestation}"
                   f"{', encrypted only' if o.encrypted_only else ''})")
    return Server(app, run_options, model_id, description, tuple(warnings), o.log_file,
                  watch.metrics if o.metrics_port is not None else None, o.metrics_port)


def _watch(ws: Workspace, o: ServeOptions, settings: Any, auth: Any) -> tuple[Any, Any]:
    """Metrics, traces and detectors for the server, and the policy's responses.

    Their ledger events go through the app's audit queue (bound by ``create_app``).
    """
    from sealtune.monitor.policy import default_policy, load_policy
    from sealtune.monitor.runtime import build_monitor
    from sealtune.serve.watch import ServerResponses, Watch, model_version

    metrics = None
    if o.metrics_port is not None or o.metrics_dir is not None:
        from sealtune.monitor.prometheus import check_bind, open_sink

        check_bind("127.0.0.1")
        metrics = open_sink(directory=o.metrics_dir)
    tracer = None
    if o.traces:
        from sealtune.monitor.tracing import configure_tracing

        tracer = configure_tracing()
    resources = _resources(ws, o)
    policy = load_policy(o.monitor_policy) if o.monitor_policy else default_policy()
    responses = ServerResponses(auth)
    version = model_version(model_id=settings.model_id, digest=settings.model_digest,
                            registry=settings.registry)
    monitor = build_monitor(policy, model_version=version, audit=None,
                            metrics=metrics, responses=responses, resources=resources)
    return Watch(model_version=version, metrics=metrics, monitor=monitor,
                 tracer=tracer), responses


def _resources(ws: Workspace, o: ServeOptions) -> dict[str, Any]:
    """The served model's filter and canaries (those its training job planted, from the
    job's sealed seed, and ``--canaries``)."""
    from sealtune.serve.model import resolve_model
    from sealtune.serve.resources import job_canary_secrets, open_resources, source_resources

    if o.source is not None:  # a registry version: its verified files, not a workspace path
        return source_resources(ws, o.source, canaries=o.canaries)
    files = None if o.engine == "echo" else resolve_model(o.model, keys=ws.keys,
                                                           workspace_root=ws.root)
    planted = job_canary_secrets(ws.root, ws.keys, o.model)
    return open_resources(files, canaries=o.canaries, planted=planted)


def run_server(server: Server) -> None:
    """Serve until interrupted (request log to :attr:`Server.log_file`, else stderr)."""
    import uvicorn

    from sealtune.serve.logs import configure_logging

    configure_logging(path=str(server.log_file) if server.log_file else None)
    listener = None
    if server.metrics is not None and server.metrics_port is not None:
        from sealtune.monitor.prometheus import serve_metrics

        listener = serve_metrics(server.metrics, port=server.metrics_port)
    try:
        uvicorn.run(server.app, **server.uvicorn_options)
    finally:
        if listener is not None:
            listener.stop()
