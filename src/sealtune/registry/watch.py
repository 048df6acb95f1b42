"""What a server serving a registry version checks, at start and every second after.

:class:`ServingGuard` resolves ``NAME@vN`` or ``NAME@STAGE`` to a verified,
non-revoked version and hands the server its files (checked against the
signature as they are read, sealed blobs opened in memory) as a
:class:`~sealtune.serve.model.ModelSource` whose ``registry`` fields (name,
version, signature digest, signer) go into the attestation's config
measurement. A background thread then re-reads the signed snapshot every
``interval`` seconds, keeping in memory the highest snapshot version it has
seen; :meth:`ServingGuard.wrap` puts an ASGI layer in front of the app that
answers every request with an error while the guard refuses:

* ``410`` ``model_revoked``: the served version was revoked;
* ``503`` ``registry_snapshot_invalid``: the snapshot no longer verifies,
  is older than one seen (rollback) or expired (freeze), naming which.

When the served reference is a stage and its alias moves (a promotion or a
rollback), the guard loads the new version and calls ``on_move`` with it
(the server swaps its engine, and the monitor's checks built from that
version's own filter and canaries, without a restart). A move that fails
(the version or its canary seed does not verify) is refused with ``503``
and retried at each check; the old version is not served in its place.

What this protects against: a server that keeps serving a version after it
was revoked (within ``interval`` plus one check), a replayed or frozen
registry. What it does not: requests already being answered when the
revocation is seen finish; an attacker who stops the guard thread has the
server process already.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError, SealtuneError
from sealtune.registry.signing import key_id
from sealtune.registry.snapshot import Snapshot
from sealtune.registry.state import Ref, Registry, parse_ref
from sealtune.registry.versions import VersionFiles

if TYPE_CHECKING:
    from sealtune.serve.model import ModelFiles, ModelSource
    from sealtune.workspace import Workspace

REVOKED, INVALID = "model_revoked", "registry_snapshot_invalid"


class ServingGuard:
    """Resolve, load and keep checking one registry reference (see the module docstring).

    Args:
        ws: the open workspace (keys to open the sealed blobs; the ledger).
        text: ``NAME@vN`` or ``NAME@STAGE``.
        interval: seconds between checks of the snapshot.
    """

    def __init__(self, ws: Workspace, text: str, *, interval: float = 1.0) -> None:
        parse_ref(text)
        self.ws, self.text, self.interval = ws, text, interval
        self.highest = 0
        self.ref: Ref | None = None
        self.refusal: tuple[int, str, str] | None = None
        self.on_move: Callable[[ModelSource], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, reg: Registry | None = None) -> ModelSource:
        """The current version's files, verified and not revoked.

        Raises:
            IntegrityError: the snapshot, record or signature fails its check.
            UsageError: unknown reference.
            PolicyViolation: the version is revoked.
        """
        from sealtune.errors import PolicyViolation
        from sealtune.serve.model import ModelSource

        own = reg is None
        reg = reg or Registry(self.ws)
        try:
            snap = reg.snapshot(floor=self.highest)
            self.highest = snap.version
            ref = reg.resolve(self.text, snap)
            revoked = snap.state["models"][ref.name]["revoked"].get(str(ref.version))
            if revoked is not None:
                raise PolicyViolation(f"{ref} is revoked and is not served",
                                      hint="serve another version or stage")
            files = VersionFiles(reg, ref, snap)
            base = _base(files) if files.record.get("adapter") else None
            registry = {"name": ref.name, "version": ref.version,
                        "signature": files.record["signature"],
                        "signer": key_id(reg.key.public_key())}
        finally:
            if own:
                reg.close()
        self.ref = ref
        return ModelSource(files=files, base=base, model_id=ref.name, registry=registry)

    def check(self, reg: Registry) -> None:
        """One check of the snapshot: set or clear :attr:`refusal`; follow a moved stage.

        A pinned ``NAME@vN`` is refused once revoked. A stage follows its alias
        (a revocation moves the alias back); it is refused when the stage is
        left with no version, or the version it serves is revoked.
        """
        try:
            snap = reg.snapshot(floor=self.highest)
        except IntegrityError as exc:
            self._refuse(503, INVALID, exc.message)
            return
        self.highest = snap.version
        assert self.ref is not None
        refusal = None
        if not parse_ref(self.text)[1].startswith("v"):
            refusal = self._follow(reg, snap)
        if str(self.ref.version) in snap.state["models"][self.ref.name]["revoked"]:
            refusal = (410, REVOKED, f"{self.ref} was revoked")
        if refusal is None:
            self.refusal = None
        else:
            self._refuse(*refusal)

    def _follow(self, reg: Registry, snap: Snapshot) -> tuple[int, str, str] | None:
        """Load the stage's new version if its alias moved; a refusal if that fails."""
        try:
            now = reg.resolve(self.text, snap)
        except SealtuneError:
            return None  # the stage has no version left: the revoked one is refused
        if now != self.ref and self.on_move is not None:
            previous = self.ref
            try:
                self.on_move(self.load(reg))
            except SealtuneError as exc:
                self.ref = previous  # still served: refused, and the move retried next check
                return (503, INVALID, exc.message)
        return None

    def _refuse(self, status: int, code: str, message: str) -> None:
        if self.refusal is None or self.refusal[1] != code:
            self.ws.ledger.append(actor="sealtune-serve", action="serve.registry_refused",
                                  resource=str(self.ref), outcome="denied",
                                  details={"code": code, "status": status})
        self.refusal = (status, code, message)

    def start(self) -> None:
        """Start checking in a background thread (daemon)."""
        self._thread = threading.Thread(target=self._run, name="registry-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background checks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        reg = Registry(self.ws)  # its own catalogue connection, in this thread
        try:
            while not self._stop.wait(self.interval):
                self.check(reg)
        finally:
            reg.close()

    def wrap(self, app: Any) -> Callable[..., Any]:
        """An ASGI app answering every HTTP request with the refusal while there is one."""

        async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            refusal = self.refusal
            if scope["type"] != "http" or refusal is None:
                await app(scope, receive, send)
                return
            status, code, message = refusal
            body = json.dumps({"error": {"message": message, "type": "model_unavailable",
                                         "code": code}}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": body})

        guarded.state = app.state  # type: ignore[attr-defined]
        return guarded


def _base(files: VersionFiles) -> ModelFiles:
    """The base model under an adapter version, checked against its training record."""
    from sealtune.sandbox.measurement import digest_tree
    from sealtune.serve.model import MANIFEST, PlainModelDir

    try:
        base = json.loads(files.read(MANIFEST))["base"]
        path, digest = Path(base["path"]), base.get("digest")
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{files.ref}: {MANIFEST} names no base model",
                             hint="register the model of a training job") from None
    if digest is not None and digest_tree(path) != digest:
        raise IntegrityError(f"the base model at {path} is not the one {files.ref} was trained "
                             "on", hint="restore the base model directory")
    return PlainModelDir(path)


def build_guarded_server(ws: Workspace, options: Any) -> tuple[Any, ServingGuard]:
    """A server for ``options.model`` = ``NAME@vN`` / ``NAME@STAGE``, guarded and following.

    The version is loaded only when verified and not revoked; the returned
    server's app answers with the guard's refusal once the version is
    revoked or the snapshot fails, and swaps in the new version when a
    stage's alias moves. The guard is started; stop it when the server stops.

    Raises:
        IntegrityError, UsageError, PolicyViolation: see :meth:`ServingGuard.load`.
    """
    from dataclasses import replace

    from sealtune.serve.launch import build_server, load_engine
    from sealtune.serve.resources import source_resources
    from sealtune.serve.watch import model_version

    guard = ServingGuard(ws, options.model)
    server = build_server(ws, replace(options, source=guard.load()))
    inner = server.app

    def on_move(source: ModelSource) -> None:
        # Everything of the new version is loaded and checked before anything is swapped:
        # its engine, and the monitor's checks from its own signed files (filter, canaries).
        gen, _model_id, digest = load_engine(ws, engine=options.engine, model=source.model_id,
                                             source=source)
        state = inner.state.sealtune
        settings = replace(state.settings, model_digest=digest, registry=source.registry)
        served = state.watch.bind(
            model_version(model_id=settings.model_id, digest=digest, registry=source.registry),
            source_resources(ws, source, canaries=options.canaries))
        state.swap_model(settings, gen, served)

    guard.on_move = on_move
    guard.start()
    return replace(server, app=guard.wrap(inner)), guard
