"""Reading the registry: list, show, history, the signer's public key, expected measurements.

Every view reads the verified snapshot (:class:`~sealtune.registry.state.Registry`),
so what it shows is what was signed. What this protects against: showing an
edited catalogue as true. What it does not: a view is a read; it checks the
snapshot and records, not every blob (that is ``models verify``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sealtune.registry.signing import key_id, public_pem
from sealtune.registry.state import Registry, parse_ref

if TYPE_CHECKING:
    from sealtune.workspace import Workspace


def _version_view(name: str, n: str, model: dict[str, Any]) -> dict[str, Any]:
    entry = model["versions"][n]
    return {"ref": f"{name}@v{n}", "version": int(n), "created": entry["created"],
            "model_digest": entry["model_digest"], "signature": entry["signature"],
            "stages": sorted(s for s, v in model["stages"].items() if v == int(n)),
            "revoked": model["revoked"].get(n)}


def list_models(ws: Workspace) -> list[dict[str, Any]]:
    """Every registered version, by name then version."""
    reg = Registry(ws)
    try:
        state = reg.snapshot().state
    finally:
        reg.close()
    return [_version_view(name, n, model) for name, model in sorted(state["models"].items())
            for n in sorted(model["versions"], key=int)]


def show_model(ws: Workspace, text: str) -> dict[str, Any]:
    """``NAME`` (all its versions and stages) or ``NAME@vN`` / ``NAME@STAGE`` (its record)."""
    reg = Registry(ws)
    try:
        snap = reg.snapshot()
        if "@" not in text:
            ref_name = text
            reg.resolve(f"{text}@v1", snap) if text not in snap.state["models"] else None
            model = snap.state["models"][ref_name]
            return {"name": ref_name, "stages": model["stages"],
                    "versions": [_version_view(ref_name, n, model)
                                 for n in sorted(model["versions"], key=int)]}
        ref = reg.resolve(text, snap)
        record = reg.record(ref, snap)
        model = snap.state["models"][ref.name]
        return {**_version_view(ref.name, str(ref.version), model), "record": record,
                "snapshot": snap.version}
    finally:
        reg.close()


def history(ws: Workspace, name: str) -> list[dict[str, Any]]:
    """The registry's ledger events about ``name``, oldest first."""
    out = []
    for entry in ws.ledger.entries():
        if entry.action.startswith("registry.") and (
                entry.resource == name or entry.resource.startswith(name + "@")):
            out.append({"seq": entry.seq, "time": entry.time, "actor": entry.actor,
                        "action": entry.action, "resource": entry.resource,
                        "outcome": entry.outcome, "details": dict(entry.details)})
    return out


def signer_public_key(ws: Workspace) -> tuple[bytes, str]:
    """The registry signing key's PEM public key and its id (created on first use)."""
    reg = Registry(ws)
    try:
        public = reg.key.public_key()
    finally:
        reg.close()
    return public_pem(public), key_id(public)


def expected_measurements(ws: Workspace, text: str, *, engine: str = "transformers"
                          ) -> dict[str, Any]:
    """What a client pins for a version served with ``sealtune serve``'s default options.

    ``code`` is this installation's code measurement, ``model`` the version's
    model digest, ``config`` the digest of the default serving settings, which
    name the registry version, its signature digest and the signer (another
    option, e.g. ``--encrypted-only``, gives another config digest).
    """
    from sealtune.attest.report import measure_bytes, measure_code
    from sealtune.serve.settings import ServeSettings

    parse_ref(text)
    reg = Registry(ws)
    try:
        snap = reg.snapshot()
        ref = reg.resolve(text, snap)
        entry = snap.state["models"][ref.name]["versions"][str(ref.version)]
        public = reg.key.public_key()
    finally:
        reg.close()
    model = entry["model_digest"].split(":", 1)[1]
    registry = {"name": ref.name, "version": ref.version, "signature": entry["signature"],
                "signer": key_id(public)}
    settings = ServeSettings(model_id=ref.name, model_digest=model, engine=engine,
                             registry=registry)
    return {"model": str(ref),
            "measurement": {"code": measure_code(), "model": model,
                            "config": measure_bytes(settings.measured())},
            "registry": registry,
            "revoked": snap.state["models"][ref.name]["revoked"].get(str(ref.version))}
