"""Registering, verifying, reading and exporting model versions (``NAME@vN``).

:func:`register_model` turns a finished training job's model into the next
version of a name: every file is stored as a sealed, content-addressed blob
(the job's sealed weights are copied as they are, still under the dataset's
KEKs; clear files such as ``config.json`` are sealed under the same keys),
a ``provenance.json`` is added (dataset ML-BOM digest, training config and
job, sandbox measurement, ε, model digest, gate report digest when one
exists), and the whole set is signed in the OpenSSF model-signing format.
The version number is assigned inside the catalogue transaction that signs
the next snapshot, so the signed snapshot is what binds ``NAME@vN`` to a
signature.

:func:`verify_version` checks everything a reader relies on (snapshot,
record, signature, every blob's authenticity and plaintext digest, the file
set); :class:`VersionFiles` serves a version's files from memory, checking
each against the signature as it is read.

What this protects against: a flipped byte in any stored blob, a file added
to or removed from a version, an edited record, a signature from another key
(each an ``IntegrityError`` naming the file). Key rotation (``sealtune keys
rotate``) re-wraps the sealed blobs in place (they are named by their
content digest, which a re-wrap keeps), and ``--retire-old`` is refused
while one is still wrapped under an old version. What it does not:
plaintext written by :func:`export_version` is the caller's to protect.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import IntegrityError, SealtuneError, UsageError
from sealtune.keys.sealing import seal_bytes, unseal_into
from sealtune.registry.signing import SIGNATURE_FILE, sign_model, verify_model_signature
from sealtune.registry.snapshot import Snapshot, canonical
from sealtune.registry.state import Ref, Registry, check_name
from sealtune.registry.store import digest_bytes

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

PROVENANCE = "provenance.json"
RECORD_FORMAT = "sealtune.registry-version/v1"
PROVENANCE_FORMAT = "sealtune.model-provenance/v1"
_SEALED = ".sealed"


class _Hasher:
    """A write-only sink that hashes what is written (plaintext never kept)."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        self.h.update(data)
        self.size += len(data)
        return len(data)


def manifest_digest(digests: dict[str, str]) -> str:
    """``sealtune.serve.model.model_digest``'s formula over ``{name: sha256 hex}``."""
    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(f"{digests[name]} {name}\n".encode())
    return h.hexdigest()


def _tmp(reg: Registry) -> Path:
    return reg.store.sealed_dir / f".tmp-{os.getpid()}-{secrets.token_hex(8)}"


def _adopt(reg: Registry, tmp: Path) -> str:
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    return reg.store.adopt_sealed(tmp)


def _store_file(reg: Registry, src: Path, *, key_names: list[str]) -> dict[str, Any]:
    """Store one model file as a sealed blob; its plaintext digest and size."""
    tmp = _tmp(reg)
    try:
        if src.name.endswith(_SEALED):
            shutil.copyfile(src, tmp)  # copied first, then checked: what is checked is kept
        else:
            seal_bytes(tmp, src.read_bytes(), keys=reg.ws.keys, key_names=key_names)
        sink = _Hasher()
        unseal_into(tmp, sink, keys=reg.ws.keys)  # type: ignore[arg-type]
        blob = _adopt(reg, tmp)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"blob": blob, "sha256": sink.h.hexdigest(), "size": sink.size}


def _seal_small(reg: Registry, data: bytes, *, key_names: list[str]) -> dict[str, Any]:
    tmp = _tmp(reg)
    try:
        seal_bytes(tmp, data, keys=reg.ws.keys, key_names=key_names)
        blob = _adopt(reg, tmp)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"blob": blob, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _finished_job(ws: Workspace, job: str) -> dict[str, Any]:
    from sealtune.train import resolve_job, show_job

    rec = show_job(ws, resolve_job(ws, job))
    if rec.get("status") != "finished" or not rec.get("model"):
        raise UsageError(f"job {rec['id']} has not finished (status {rec.get('status')})",
                         hint="register the model of a finished training job")
    return rec


def _model_digest(model_dir: Path, digests: dict[str, str]) -> tuple[str, bool]:
    """The measured model digest (over the base too for an adapter), and whether an adapter."""
    from sealtune.serve.model import ADAPTER_CONFIG, model_digest, resolve_base

    own = manifest_digest(digests)
    if ADAPTER_CONFIG not in digests or "config.json" in digests:
        return own, False
    base = model_digest(resolve_base(model_dir, base=None))
    both = f"adapter {own}\nbase {base}\n"
    return hashlib.sha256(both.encode()).hexdigest(), True


def _bom_digest(ws: Workspace, dataset: str) -> str | None:
    from sealtune.data import show_dataset

    try:
        bom = show_dataset(ws, dataset, verify=False).file("bom")
        return digest_bytes(bom.read_bytes())
    except (OSError, SealtuneError):
        return None  # a dataset removed since: the provenance says so (null)


def _provenance(ws: Workspace, rec: dict[str, Any], *, model_digest: str,
                gate: str | None) -> dict[str, Any]:
    privacy = rec.get("privacy") or {}
    return {"format": PROVENANCE_FORMAT, "job": rec["id"],
            "dataset": {"name": rec["dataset"], "ml_bom": _bom_digest(ws, rec["dataset"])},
            "training_config": rec.get("config"), "config_fingerprint": rec.get("fingerprint"),
            "sandboxed": rec.get("sandboxed"), "sandbox_measurement": rec.get("measurement"),
            "epsilon": privacy.get("epsilon"), "privacy": privacy or None,
            "model_digest": "sha256:" + model_digest, "gate_report": gate}


def register_model(ws: Workspace, name: str, *, job: str) -> Ref:
    """Register the model of finished training job ``job`` as the next version of ``name``.

    Raises:
        UsageError: a bad name, or the job has not finished.
        PolicyViolation: the actor may not register (recorded).
        IntegrityError: a model file fails its check.
    """
    from sealtune.registry.access import authorize
    from sealtune.registry.gate import gate_digest

    check_name(name)
    authorize(ws, "register", name)
    rec = _finished_job(ws, job)
    model_dir = Path(rec["model"])
    key_names = list(rec.get("seal_keys") or [])
    reg = Registry(ws)
    try:
        files: dict[str, dict[str, Any]] = {}
        for src in sorted(p for p in model_dir.iterdir() if p.is_file()):
            files[src.name.removesuffix(_SEALED)] = _store_file(reg, src, key_names=key_names)
        digests = {n: f["sha256"] for n, f in files.items()}
        digest, adapter = _model_digest(model_dir, digests)
        prov = _provenance(ws, rec, model_digest=digest, gate=gate_digest(ws, digest))
        files[PROVENANCE] = _seal_small(reg, canonical(prov), key_names=key_names)
        signature = sign_model(reg.key, model_name=name,
                               digests={n: f["sha256"] for n, f in files.items()})
        sig_blob = reg.store.put_blob(signature)
        return _commit_version(reg, name, rec, files=files, signature=sig_blob,
                               model_digest=digest, adapter=adapter, key_names=key_names)
    finally:
        reg.close()


def _commit_version(reg: Registry, name: str, rec: dict[str, Any], *,
                    files: dict[str, Any], signature: str, model_digest: str, adapter: bool,
                    key_names: list[str]) -> Ref:
    from sealtune.train.jobs.records import now

    created = now()
    holder: list[int] = []

    def change(state: dict[str, Any], db: Any) -> None:
        version = reg.store.next_version(db, name)
        record = {"format": RECORD_FORMAT, "name": name, "version": version,
                  "created": created, "job": rec["id"], "files": files,
                  "signature": signature, "model_digest": "sha256:" + model_digest,
                  "adapter": adapter, "keys": key_names, "actor": reg.ws.actor}
        text = canonical(record).decode()
        reg.store.insert_version(db, name, version, text, created)
        model = state["models"].setdefault(
            name, {"versions": {}, "stages": {}, "promotions": {}, "revoked": {}})
        model["versions"][str(version)] = {
            "record": digest_bytes(text.encode()), "signature": signature,
            "model_digest": "sha256:" + model_digest, "created": created}
        holder.append(version)

    snap = reg.commit(change)
    ref = Ref(name, holder[0])
    reg.ws.audit("registry.register", str(ref),
                 details={"job": rec["id"], "model_digest": "sha256:" + model_digest,
                          "signature": signature, "snapshot": snap.version})
    return ref


def verify_version(ws: Workspace, text: str) -> dict[str, Any]:
    """Check every stored part of ``NAME@vN`` / ``NAME@STAGE``; return its record and status.

    Raises:
        IntegrityError: any mismatch, naming the file.
    """
    reg = Registry(ws)
    try:
        snap = reg.snapshot()
        ref = reg.resolve(text, snap)
        record, signed = _checked_signature(reg, ref, snap)
        for fname, entry in sorted(record["files"].items()):
            sink = _Hasher()
            path = Path(entry["blob"])
            try:
                path = reg.store.blob_path(entry["blob"])  # remote: a fetched copy
                unseal_into(path, sink, keys=ws.keys)  # type: ignore[arg-type]
            except (IntegrityError, FileNotFoundError):
                raise IntegrityError(f"{ref}: file {fname} ({path}) failed its integrity "
                                     "check", hint="restore the registry from a trusted "
                                                   "copy") from None
            if sink.h.hexdigest() != signed[fname]:
                raise IntegrityError(f"{ref}: file {fname} ({path}) does not match its "
                                     "signature", hint="restore the registry from a trusted "
                                                       "copy")
        return {"ref": str(ref), "record": record, "revoked": _revoked(snap, ref)}
    finally:
        reg.close()


def _revoked(snap: Snapshot, ref: Ref) -> dict[str, Any] | None:
    revoked: dict[str, Any] | None = snap.state["models"][ref.name]["revoked"].get(
        str(ref.version))
    return revoked


def _checked_signature(reg: Registry, ref: Ref, snap: Snapshot
                       ) -> tuple[dict[str, Any], dict[str, str]]:
    """The record and the signed ``{file: sha256}``, the signature matching the snapshot."""
    record = reg.record(ref, snap)
    entry = snap.state["models"][ref.name]["versions"][str(ref.version)]
    if record["signature"] != entry["signature"]:
        raise IntegrityError(f"{ref}: the record's signature is not the one the snapshot "
                             "names", hint="restore the registry from a trusted copy")
    path = reg.store.blob_path(record["signature"])
    signed = verify_model_signature(reg.store.get_blob(record["signature"]),
                                    reg.key.public_key(), what=f"{ref} signature ({path})")
    extra = sorted(set(record["files"]) ^ set(signed))
    if extra:
        raise IntegrityError(f"{ref}: file {extra[0]} is not in both the record and the "
                             "signature", hint="restore the registry from a trusted copy")
    return record, signed


class VersionFiles:
    """A version's files from memory (the ``ModelFiles`` shape of :mod:`sealtune.serve.model`).

    ``provenance.json`` is not a model file: the model digest (and the gate
    report's) covers the trained model only.
    """

    def __init__(self, reg: Registry, ref: Ref, snap: Snapshot) -> None:
        self._reg = reg
        self.ref = ref
        self.record, self._signed = _checked_signature(reg, ref, snap)
        self.label = str(ref)
        self.digests: dict[str, str] = {}

    def names(self) -> list[str]:
        return sorted(n for n in self.record["files"] if n != PROVENANCE)

    def read(self, name: str) -> bytes:
        import io

        entry = self.record["files"].get(name)
        if entry is None:
            raise UsageError(f"{self.ref} has no file {name!r}")
        out = io.BytesIO()
        path = Path(entry["blob"])
        try:
            path = self._reg.store.blob_path(entry["blob"])  # remote: a fetched copy
            unseal_into(path, out, keys=self._reg.ws.keys)
        except (IntegrityError, FileNotFoundError):
            raise IntegrityError(f"{self.ref}: file {name} ({path}) failed its integrity "
                                 "check", hint="restore the registry from a trusted copy") from None
        data = out.getvalue()
        if hashlib.sha256(data).hexdigest() != self._signed[name]:
            raise IntegrityError(f"{self.ref}: file {name} ({path}) does not match its "
                                 "signature", hint="restore the registry from a trusted copy")
        self.digests[name] = self._signed[name]
        return data


def export_version(ws: Workspace, text: str, out: Path) -> Path:
    """Write ``NAME@vN``'s plaintext files and ``model.sig`` into the new directory ``out``.

    Stock ``model_signing verify key OUT --signature OUT/model.sig --public_key PUB``
    verifies the result. Recorded as ``registry.export``.

    Raises:
        UsageError: ``out`` exists and is not an empty directory.
        IntegrityError: the version fails :func:`verify_version`'s checks.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty directory",
                         hint="export into a new directory")
    reg = Registry(ws)
    try:
        snap = reg.snapshot()
        ref = reg.resolve(text, snap)
        files = VersionFiles(reg, ref, snap)
        build = out.with_name(f".{out.name}.export-{secrets.token_hex(4)}")
        build.mkdir(mode=0o700, parents=True)
        for name in sorted(files.record["files"]):
            (build / name).write_bytes(files.read(name))
        (build / SIGNATURE_FILE).write_bytes(reg.store.get_blob(files.record["signature"]))
        if out.exists():
            out.rmdir()
        os.rename(build, out)
        ws.audit("registry.export", str(ref), details={"signature": files.record["signature"]})
        return out
    finally:
        reg.close()
