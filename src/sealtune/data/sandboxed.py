"""The data step in its own sandbox: keys over a pipe, sealed outputs, the lifecycle in the ledger.

:func:`ingest_dataset` is the ingest the CLI and the pipeline call. By
default it runs the stage in a bubblewrap
:class:`~sealtune.sandbox.process.Sandbox` (the same machinery, isolation
and ledger events as training's): this process, which holds the keyring,
unwraps the raw input's data key when the input is sealed (audited as
``data.read``), makes a fresh sealing target for each sealed file of the
dataset and the redaction secret, measures what will run (sealtune's code,
the job's settings, the raw input), and starts :mod:`sealtune.data.worker`
with the input bound read-only, the keys over the key pipe, a scrubbed
environment, no network and a private tmpfs. The worker writes the
dataset's files into ``<build>/sandbox/``; once the sandbox is destroyed,
this process accepts the sealed files only if each carries the header of
the target made for it, checks the manifest's digests, moves them into the
build directory and publishes it under the key-version check. The ledger
gets ``sandbox.created`` (with the measurement and isolation flags),
``sandbox.data_decrypted``, ``sandbox.outputs_sealed`` and
``sandbox.destroyed``, each marked ``"stage": "data"``, on the resource
``dataset/<name>``; the manifest records the measurement (``sandbox``).

``sandbox=False`` (``--no-sandbox``) runs :func:`sealtune.data.ingest.ingest`
in this process: it warns and is recorded as ``data.unsafe_no_sandbox``. The
outputs are the same either way (the same :func:`~sealtune.data.writing.write_dataset`
writes them). Without bubblewrap the sandboxed ingest fails closed
(:class:`~sealtune.sandbox.spec.SandboxUnavailableError`, audited as
``data.refused``).

What this protects against: a parser, detector or library bug (or a hostile
input that exploits one) reaching the network, the keyring, the rest of the
workspace or the host's disks; plaintext of the raw input or of the records
on the host's disks (it exists only in the sandbox's memory and tmpfs); a
sandbox that hands back unsealed files or files sealed under other keys; an
unrecorded weakening. What it does not: see :mod:`sealtune.sandbox` (OS
isolation, not a TEE: root on the host can read the sandbox's memory and
the keys in this process); the plain facts the stage writes (counts,
digests, masked examples, record ids) are written by the sandbox and only
checked for shape by their readers; a failure inside is reported by class
(and a malformed line by number) only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.data import store
from sealtune.data.builds import remove_stale_builds, start_build
from sealtune.data.detections import warn_unsafe
from sealtune.data.executors import check_executor
from sealtune.data.ingest import (
    IngestResult,
    check_request,
    check_workers,
    ingest,
    publish,
    resolve_policy,
)
from sealtune.data.passes import Progress, changed
from sealtune.data.policy import Policy
from sealtune.data.redact import DatasetKeys
from sealtune.data.sandbox_run import DataRun
from sealtune.data.worker import JOB, QUARANTINED, RAW, SEALED, target_key
from sealtune.data.writing import Written
from sealtune.errors import UsageError
from sealtune.keys.sealing import SealingTarget, file_target, is_sealed, new_target
from sealtune.keys.versions import CommitGuard
from sealtune.sandbox.measurement import measure
from sealtune.sandbox.spec import SandboxSpec

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["OUTPUTS", "UNSAFE_WARNING", "check_sandboxed_executor", "data_spec",
           "ingest_dataset"]

UNSAFE_WARNING = ("ingesting WITHOUT the sandbox (--no-sandbox): the raw input's plaintext "
                  "will exist in this process, next to the keyring; recorded in the audit "
                  "ledger as data.unsafe_no_sandbox")
#: The code the data sandbox measures: the whole sealtune package.
CODE_DIR = Path(__file__).resolve().parents[1]
#: What the worker may leave in its output directory; anything else is removed.
OUTPUTS = (*SEALED, store.FINDINGS_FILE, store.BOM_FILE, store.MANIFEST_FILE, QUARANTINED)
OUT_DIR = "sandbox"


def ingest_dataset(ws: Workspace, path: str | os.PathLike[str], *, name: str,
                   policy: Policy | None = None, format: str | None = None,
                   text_field: str | None = None, on_error: str | None = None,
                   shred_original: bool = False, key_names: Sequence[str] | None = None,
                   progress: Progress | None = None, dataset_keys: DatasetKeys | None = None,
                   provenance: Mapping[str, Any] | None = None, sandbox: bool = True,
                   bwrap: str = "bwrap", tmpfs_size: int = 1 << 30,
                   timeout: float | None = None, executor: str = "local",
                   workers: int = 1) -> IngestResult:
    """Ingest ``path`` as the sealed dataset ``datasets/<name>``, in the data sandbox.

    Args:
        ws, path, name, policy, format, text_field, on_error, shred_original, key_names,
            progress, dataset_keys, provenance: as :func:`sealtune.data.ingest.ingest`.
        sandbox: ``False`` ingests in this process without isolation (unsafe: warns,
            and is recorded in the ledger as ``data.unsafe_no_sandbox``).
        bwrap: the bubblewrap executable.
        tmpfs_size: bytes of the sandbox's private tmpfs.
        timeout: seconds after which the sandbox is destroyed and the ingest fails.
        executor: ``local``, or ``ray`` (PII detection on Ray Data,
            :mod:`sealtune.data.executors`). In the sandbox, ``ray`` starts a private
            local Ray inside it (its network is loopback only); a cluster
            (``RAY_ADDRESS``) is reached only with ``sandbox=False``.
        workers: PII detection on this many processes (inside the sandbox when it is on;
            same outputs: :mod:`sealtune.data.parallel`).

    Raises:
        SandboxUnavailableError: the sandbox cannot be created (and ``sandbox`` is True).
        UsageError, DataFormatError, ConfigError: as :func:`~sealtune.data.ingest.ingest`;
            UsageError also for ``executor="ray"`` with the sandbox on and ``RAY_ADDRESS``
            set, or without Ray installed.
        IntegrityError: the sandbox handed back files that are not what it was told to seal.
    """
    if sandbox:
        check_sandboxed_executor(executor)
    if not sandbox:
        warnings.warn(UNSAFE_WARNING, UserWarning, stacklevel=2)
        ws.audit("data.unsafe_no_sandbox", f"dataset/{name}", details={})
        return ingest(ws, path, name=name, policy=policy, format=format, text_field=text_field,
                      on_error=on_error, shred_original=shred_original, key_names=key_names,
                      progress=progress, dataset_keys=dataset_keys, provenance=provenance,
                      executor=executor, workers=workers)
    src = Path(path)
    check_request(ws, src, name=name, shred_original=shred_original)
    check_workers(workers, executor=executor)
    policy, on_error = resolve_policy(policy, on_error)
    warn_unsafe(policy, stacklevel=3)
    keys = [ws.config.default_key] if key_names is None else list(key_names)
    job = {"name": name, "policy": policy.to_dict(), "policy_source": policy.source,
           "format": format, "text_field": text_field, "on_error": on_error,
           "key_names": keys, "input_name": src.name, "workers": workers,
           "executor": executor,
           "provenance": None if provenance is None else dict(provenance)}
    try:
        written, measurement = _run(ws, src, job, dataset_keys or DatasetKeys.generate(),
                                    DataRun(ws, name=name, progress=progress, bwrap=bwrap,
                                            tmpfs_size=tmpfs_size, timeout=timeout))
        ws.publish(store.DATASETS, name, ws.area(store.DATASETS) / name)  # remote storage
    except BaseException as exc:
        ws.audit("data.ingest", f"dataset/{name}", outcome="failure",
                 details={"error": type(exc).__name__, "sandboxed": True})
        raise
    return publish(ws, src, name, written, policy=policy, shred_original=shred_original,
                   details={"sandboxed": True, "measurement": measurement["digest"],
                            **({"workers": workers} if workers > 1 else {}),
                            **({"executor": executor} if executor != "local" else {})})


def check_sandboxed_executor(executor: str) -> str:
    """``executor`` if it can run inside the data sandbox.

    ``ray`` can: a private local Ray starts inside the sandbox, whose network
    namespace has only loopback, so none of Ray's servers (which bind every
    interface) is reachable from outside, and its processes die with the
    sandbox. A cluster cannot be reached from there.

    Raises:
        UsageError: an unknown executor; ``ray`` with ``RAY_ADDRESS`` set, or not installed.
    """
    check_executor(executor)
    if executor == "ray":
        if os.environ.get("RAY_ADDRESS"):
            raise UsageError(
                "--executor ray in the data sandbox runs a private local Ray: the sandbox "
                "has no network, so the cluster in RAY_ADDRESS cannot be used from it",
                hint="unset RAY_ADDRESS, or add --no-sandbox to use that cluster (recorded)")
        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray Data", hint="pip install 'sealtune[ray]'")
    return executor


def _keys(ws: Workspace, src: Path, job: Mapping[str, Any], dataset_keys: DatasetKeys,
          ) -> tuple[dict[str, bytearray], dict[str, SealingTarget]]:
    """The secrets for the key pipe, and the targets (their public halves to check against)."""
    secrets: dict[str, bytearray] = {"dataset_keys": bytearray(dataset_keys.secret)}
    targets: dict[str, SealingTarget] = {}
    try:
        if is_sealed(src):  # unwrapped here (audited key.unwrap); opened only inside
            raw = file_target(src, keys=ws.keys)
            assert raw.data_key is not None
            secrets[RAW] = raw.data_key
            ws.keys.audit("data.read", str(src), details={"part": "sealed input",
                                                          "sandboxed": True})
        for file in SEALED:
            targets[file] = new_target(ws.keys, job["key_names"])
            secrets[target_key(file)] = targets[file].to_bytes()
    except BaseException:
        _wipe(secrets, targets)
        raise
    return secrets, targets


def _wipe(secrets: Mapping[str, bytearray], targets: Mapping[str, SealingTarget]) -> None:
    for value in secrets.values():
        value[:] = bytes(len(value))
    for target in targets.values():
        target.wipe()


def _run(ws: Workspace, src: Path, job: dict[str, Any], dataset_keys: DatasetKeys,
         run: DataRun) -> tuple[Written, dict[str, Any]]:
    """Build the dataset in the sandbox and publish it; return what was written, measured."""
    before = src.stat()
    root = store.datasets_dir(ws)
    removed = remove_stale_builds(root)
    if removed:
        ws.audit("data.cleanup", store.DATASETS, details={"stale_builds_removed": removed})
    build = start_build(root, str(job["name"]))
    tmp = Path(tempfile.mkdtemp(prefix="sealtune-data-job-"))
    secrets: dict[str, bytearray] = {}
    targets: dict[str, SealingTarget] = {}
    try:
        out = build.path / OUT_DIR
        out.mkdir(mode=0o700)
        measurement = measure(code=[CODE_DIR],
                              config=json.dumps(job, sort_keys=True).encode(),
                              inputs={RAW: src})
        measured: dict[str, Any] = {**measurement.to_dict(), "digest": measurement.digest}
        sandbox = {"stage": "data", "measurement": measured}
        (tmp / JOB).write_text(json.dumps({**job, "sandbox": sandbox}), "utf-8")
        spec = data_spec(ws, out=out, src=src, job_file=tmp / JOB, bwrap=run.bwrap,
                         tmpfs_size=run.tmpfs_size)
        secrets, targets = _keys(ws, src, job, dataset_keys)
        written = run.execute(spec, secrets, targets, measured)
        now = src.stat()
        if (now.st_size, now.st_mtime_ns, now.st_ino) != (before.st_size, before.st_mtime_ns,
                                                          before.st_ino):
            raise changed(src)
        with CommitGuard(ws.keys, _entries(written.manifest),
                         what=f"dataset {job['name']!r}") as guard:
            guard.check()
            build.finish(root / str(job["name"]))
    except BaseException:
        build.abandon()
        raise
    finally:
        _wipe(secrets, targets)
        shutil.rmtree(tmp, ignore_errors=True)
    return written, measured


def _entries(manifest: Mapping[str, Any]) -> list[str]:
    """``uri@version`` of every wrapped key of the dataset's sealed files."""
    return sorted({k for f in manifest["files"].values() if isinstance(f, dict)
                   for k in f.get("keys", ())})


def data_spec(ws: Workspace, *, out: Path, src: Path, job_file: Path, bwrap: str = "bwrap",
              tmpfs_size: int = 1 << 30) -> SandboxSpec:
    """The data sandbox: the raw input and the job in, ``out`` writable, the keyring hidden.

    Args:
        ws: the workspace (its keyring, ledger, config and models are refused as binds).
        out: the sandbox's output directory (empty).
        src: the raw input, bound read-only as ``/sandbox/in/raw``.
        job_file: the job JSON, bound read-only as ``/sandbox/in/job``.
        bwrap: the bubblewrap executable.
        tmpfs_size: bytes of the private tmpfs.
    """
    return SandboxSpec(output_dir=out, inputs={RAW: src.resolve(), JOB: job_file},
                       hidden=(ws.keyfile_path, ws.ledger_path, ws.config_path,
                               ws.area("models")),
                       env={"OMP_NUM_THREADS": "1"}, tmpfs_size=tmpfs_size, bwrap=bwrap,
                       outputs=OUTPUTS, stage="data")
