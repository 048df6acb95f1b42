"""One data sandbox's run: start it, relay its events to the ledger, check what it handed back.

:class:`DataRun` starts :mod:`sealtune.data.worker` in a
:class:`~sealtune.sandbox.process.Sandbox` with the secrets over the key
pipe, records the lifecycle through a
:class:`~sealtune.sandbox.timeline.Timeline` (the same events as training's,
marked ``"stage": "data"``, on ``dataset/<name>``), relays progress, and
destroys the sandbox however the run ends (``sandbox.destroyed`` is recorded
on success, failure, timeout and a worker killed midway). It then accepts the
outputs only if the worker reported ``outputs_sealed``, left nothing
unexpected, sealed each file under the very target made for it (its header's
file id) and wrote a manifest whose digests match the files; the files move
from ``<build>/sandbox/`` into the build directory.

What this protects against: unsealed or foreign files passed off as the
dataset, a sandbox that outlives its run, a failure inside reported with
sample text (by class only; a malformed line by number). What it does not:
the header check reads the unauthenticated header (the file id commits to
the data key, which the parent made, and the dataset's readers authenticate
each segment); the plain files' content is as the sandbox wrote it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.data import store
from sealtune.data.formats import DataFormatError
from sealtune.data.passes import Progress
from sealtune.data.worker import QUARANTINED, SEALED
from sealtune.data.writing import Written
from sealtune.errors import ConfigError, DiskFullError, IntegrityError, SealtuneError
from sealtune.keys.content import content_digest
from sealtune.keys.file_header import describe_file
from sealtune.keys.sealing import SealingTarget
from sealtune.sandbox.process import SandboxEvent
from sealtune.sandbox.spec import SandboxSpec
from sealtune.sandbox.timeline import Timeline, exit_status, run_recorded

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["ENTRY", "DataRun"]

#: The entry module the data sandbox runs.
ENTRY = "sealtune.data.worker"
_DEBUG_HINT = ("ingest a non-sensitive sample with --no-sandbox to see the full error; "
               "check the input's format and the policy")
#: Errors that keep their class when they cross the sandbox boundary.
_CLASSES: Mapping[str, type[SealtuneError]] = {"ConfigError": ConfigError,
                                               "IntegrityError": IntegrityError}


class DataRun:
    """Runs the data worker in one sandbox and checks what it hands back.

    Args:
        ws: the workspace (its ledger gets the lifecycle).
        name: the dataset name (the ledger resource is ``dataset/<name>``).
        progress: called with ``(phase, done, total)`` for the worker's progress.
        bwrap: the bubblewrap executable.
        tmpfs_size: bytes of the private tmpfs.
        timeout: seconds after which the sandbox is destroyed and the run fails.
    """

    def __init__(self, ws: Workspace, *, name: str, progress: Progress | None, bwrap: str,
                 tmpfs_size: int, timeout: float | None) -> None:
        self.ws, self.name, self.progress = ws, name, progress
        self.bwrap, self.tmpfs_size, self.timeout = bwrap, tmpfs_size, timeout
        self.fields: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.teardown: dict[str, Any] = {}

    def record(self, action: str, details: Mapping[str, Any], *, at: float | None = None,
               outcome: str = "success") -> None:
        """The timeline's ledger callback: one entry on ``dataset/<name>``."""
        self.ws.audit(action, f"dataset/{self.name}", outcome=outcome,  # type: ignore[arg-type]
                      details=dict(details))

    def execute(self, spec: SandboxSpec, secrets: Mapping[str, bytearray],
                targets: Mapping[str, SealingTarget], measurement: Mapping[str, Any],
                ) -> Written:
        """Run the worker, destroy the sandbox, check and move its outputs; return them."""
        from sealtune.sandbox.selfcheck import probe

        timeline = Timeline(spec, self.record, measurement=measurement)
        try:
            probe(spec)
        except SealtuneError as exc:
            self.record("data.refused", {"reason": "sandbox unavailable",
                                         "error": type(exc).__name__}, outcome="failure")
            raise
        self.teardown = run_recorded(timeline, ENTRY, [], secrets=secrets,
                                     handle=lambda ev: self._handle(ev, timeline),
                                     timeout=self.timeout)
        self._check(spec)
        return self._accept(spec.output_dir, targets)

    def _handle(self, ev: SandboxEvent, timeline: Timeline) -> None:
        if ev.type == "progress":
            if self.progress is not None:
                phase = str(ev.fields.get("phase") or "ingesting").replace("_", " ")
                total = ev.fields.get("total")
                self.progress(phase, int(ev.fields.get("step") or 0),
                              total if isinstance(total, int) else None)
            return
        if ev.type == "error":
            self.errors.append(str(ev.fields.get("kind")))
            return
        self.fields[ev.name] = dict(ev.fields)
        timeline.observe(ev)

    def _check(self, spec: SandboxSpec) -> None:
        """Raise what failed inside (by class; a malformed line by number), or stray outputs."""
        src = str(spec.inputs["raw"])
        if "DiskFullError" in self.errors:
            raise DiskFullError(spec.output_dir, hint="free space there and ingest again")
        if "DataFormatError" in self.errors:
            line = self.fields.get("data_error", {}).get("line")
            raise DataFormatError(src, line if isinstance(line, int) else None, None,
                                  "malformed record (details withheld: it was parsed inside "
                                  "the data sandbox)", hint=_DEBUG_HINT)
        for kind in self.errors:
            if kind in _CLASSES:
                raise _CLASSES[kind](f"{src}: the data sandbox failed with {kind}",
                                     hint=_DEBUG_HINT)
        if self.errors or "outputs_sealed" not in self.fields:
            raise SealtuneError(
                f"{src}: ingest failed inside the data sandbox: "
                + (", ".join(self.errors) or "it exited without sealing its outputs "
                   f"({exit_status(self.teardown.get('exit_code'))})"),
                hint=_DEBUG_HINT)
        if self.teardown.get("outputs_removed"):
            raise IntegrityError(
                f"the data sandbox left {self.teardown['outputs_removed']} unexpected file(s) "
                "or link(s) in its output directory; removed, and named in the audit log "
                "(sandbox.unexpected_outputs)", hint="the dataset was not published")

    def _accept(self, out: Path, targets: Mapping[str, SealingTarget]) -> Written:
        """Check the sealed files and the manifest; move the dataset's files up a level."""
        for file, target in targets.items():
            path = out / file
            if not path.is_file() or describe_file(path).file_id != target.file_id:
                raise IntegrityError(f"data sandbox output {file} is not sealed under the key "
                                     "made for it", hint="the dataset was not published")
        try:
            manifest = json.loads((out / store.MANIFEST_FILE).read_text("utf-8"))
            findings = json.loads((out / store.FINDINGS_FILE).read_text("utf-8"))
            quarantined = json.loads((out / QUARANTINED).read_text("utf-8"))
            for file, role in zip(SEALED, ("data", "quarantine", "keys"), strict=True):
                entry = manifest["files"][role]
                if (entry["name"] != file or entry["file_id"] != targets[file].file_id
                        or content_digest(out / file) != entry["content_sha256"]):
                    raise ValueError(role)
        except (OSError, ValueError, KeyError, TypeError, IntegrityError):
            raise IntegrityError(f"{out}: the data sandbox's manifest does not describe its "
                                 "sealed files", hint="the dataset was not published") from None
        if not (isinstance(quarantined, list) and all(isinstance(i, str) for i in quarantined)):
            raise IntegrityError(f"{out}/{QUARANTINED}: not a list of record ids")
        (out / QUARANTINED).unlink()
        for path in sorted(out.iterdir()):
            os.replace(path, out.parent / path.name)
        out.rmdir()
        return Written(manifest, findings, tuple(quarantined))
