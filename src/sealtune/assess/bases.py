"""Registered base models: assessed once, then named, pinned by a digest of every file.

``sealtune models base add NAME DIR --licence SPDX-ID --policy gate.yaml``
(:func:`add_base`) records a base model in the workspace catalogue,
``<workspace>/bases/<NAME>.json``, after three checks:

* the licence is an SPDX id on the gate policy's ``licences`` allow-list
  (:class:`~sealtune.errors.PolicyViolation` otherwise);
* the file scan of the ``model_files`` probe passes (safetensors headers,
  no pickle, no custom code, no ``auto_map``, no links or unknown files);
* a manifest of every file's SHA-256 is taken, and the directory digest
  training measures (:func:`sealtune.sandbox.measurement.digest_tree`).

Training, assessment and the pipeline then name the base by NAME
(:func:`resolve_base`): the files are hashed again and a base whose files
changed, appeared or disappeared since it was added is refused with an
:class:`~sealtune.errors.IntegrityError` (exit 3) naming the files (names,
never contents), recorded in the audit log as ``base.changed``. A plain
directory still works, with a warning that it is unpinned
(``base.unpinned`` in the audit log).

What this protects against: training or releasing on a base model other
than the one assessed (a swapped weight file, an added ``modeling_*.py``),
a base under a licence the policy does not allow. What it does not: the
files are pinned in place, not copied; whoever can write them can make the
next use fail (not succeed silently). A check is made when a base is
resolved; a file changed between the check and its use is caught by the
training measurement (``sandbox.created``), not here. The licence is what
the user declares, checked against the allow-list, not read from the files.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import ConfigError, IntegrityError, PolicyViolation, UsageError

if TYPE_CHECKING:
    from sealtune.assess.policy import GatePolicy
    from sealtune.workspace import Workspace

FORMAT = "sealtune.base-model/v1"
BASES = "bases"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
UNPINNED_WARNING = ("base model {path} is a plain directory, not a registered base: it is "
                    "unpinned (no licence check, no assessment, files may change); register "
                    "it with 'sealtune models base add NAME DIR --licence ID --policy FILE'")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class BaseModel:
    """A resolved base model.

    Attributes:
        path: the directory (absolute).
        name: the registered name, or None for a plain directory.
        digest: the directory digest training measures (``sha256:``).
        pinned: registered and verified against its manifest.
        licence: the SPDX id recorded when it was added (None if unpinned).
    """

    path: Path
    name: str | None
    digest: str
    pinned: bool
    licence: str | None = None


def manifest(directory: Path) -> dict[str, str]:
    """``relative path -> sha256 hex`` of every regular file; links and others as markers."""
    from sealtune.assess.files import PlainTree

    out: dict[str, str] = {}
    tree = PlainTree(directory)
    for entry in tree.entries():
        if entry.kind == "file":
            digest = hashlib.sha256()
            with tree.open(entry.name) as fh:
                for block in iter(lambda: fh.read(_BLOCK), b""):
                    digest.update(block)
            out[entry.name] = digest.hexdigest()
        elif entry.kind != "dir":
            out[entry.name] = entry.kind  # a link or special file: refused by the scan
    return out


def _record_path(ws: Workspace, name: str) -> Path:
    if not NAME.match(name):
        raise UsageError(f"base model name {name!r} is not allowed",
                         hint="use 1-64 letters, digits, '.', '_' or '-'")
    return ws.area(BASES) / f"{name}.json"


def add_base(ws: Workspace, *, name: str, directory: Path, licence: str,
             policy: GatePolicy) -> BaseModel:
    """Assess and register the base model in ``directory`` as ``name`` (module docstring).

    Raises:
        UsageError: a bad or taken name, or no such directory.
        PolicyViolation: the licence is not allowed, or the file scan failed.
    """
    from sealtune.assess.files import PlainTree
    from sealtune.assess.probes import PROBES, ProbeContext
    from sealtune.sandbox.measurement import digest_tree

    path = _record_path(ws, name)
    if path.exists():
        raise UsageError(f"base model {name!r} is already registered",
                         hint="choose another name; a registered base is never replaced")
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    if not policy.allows_licence(licence):
        ws.audit("base.refused", f"base/{name}", outcome="failure",
                 details={"reason": "licence", "licence": licence})
        raise PolicyViolation(f"licence {licence!r} is not on the allow-list of "
                              f"{policy.source}", hint="allowed: " + ", ".join(policy.licences))
    directory = directory.resolve()
    probe = PROBES["model_files"]
    settings = policy.probes["model_files"].settings
    result = probe.judge(probe.measure(ProbeContext(files=PlainTree(directory)), settings),
                         settings)
    if result.verdict != "pass":
        kinds = sorted({str(i["finding"]) for i in result.items if i.get("blocking")})
        ws.audit("base.refused", f"base/{name}", outcome="failure",
                 details={"reason": "file scan", "findings": kinds})
        raise PolicyViolation(f"{directory} failed the model file scan ({', '.join(kinds)})",
                              hint="a base model must hold safetensors weights and known "
                                   "configuration files only")
    files = manifest(directory)
    record = {"format": FORMAT, "name": name, "path": str(directory), "licence": licence,
              "added": datetime.now(UTC).isoformat(timespec="seconds"),
              "digest": digest_tree(directory), "files": files,
              "policy": policy.digest}
    _write(path, record)
    ws.audit("base.added", f"base/{name}", details={
        "licence": licence, "digest": record["digest"], "files": len(files),
        "policy": policy.digest})
    return BaseModel(directory, name, str(record["digest"]), True, licence)


def _write(path: Path, record: dict[str, Any]) -> None:
    from sealtune.outputs import write_atomic

    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_atomic(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def _read(path: Path, name: str) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        raise IntegrityError(f"the catalogue record of base model {name!r} is unreadable",
                             hint=f"restore {path} or register the base again under a new "
                                  "name") from None
    if (not isinstance(record, dict) or record.get("format") != FORMAT
            or record.get("name") != name or not isinstance(record.get("files"), dict)
            or not isinstance(record.get("path"), str)):
        raise IntegrityError(f"the catalogue record of base model {name!r} is malformed",
                             hint=f"restore {path}")
    return record


def is_registered(ws: Workspace, ref: str) -> bool:
    """Whether ``ref`` names a registered base model."""
    return bool(NAME.match(ref)) and (ws.area(BASES) / f"{ref}.json").is_file()


def resolve_base(ws: Workspace, ref: str | Path, *, warn: bool = True) -> BaseModel:
    """A base model by registered NAME (verified) or plain directory (unpinned, warned).

    Args:
        ws: the workspace (its catalogue; its ledger records an unpinned use).
        ref: a registered name, or a directory.
        warn: warn (``UserWarning``) when the base is an unpinned directory; callers that
            report it otherwise (the pipeline's step summary) pass False. The audit log
            records ``base.unpinned`` either way.

    Raises:
        IntegrityError: a registered base whose files changed since it was added.
        ConfigError: neither a registered name nor a directory.
    """
    from sealtune.sandbox.measurement import digest_tree

    text = str(ref)
    if is_registered(ws, text):
        return verify_base(ws, text)
    path = Path(text)
    if not path.is_dir():
        raise ConfigError(f"no registered base model or directory named {text!r}",
                          hint="list them with 'sealtune models base list', or pass a "
                               "model directory")
    path = path.resolve()
    if warn:
        warnings.warn(UNPINNED_WARNING.format(path=path), UserWarning, stacklevel=2)
    digest = digest_tree(path)
    # by digest, not host path: the audit log is served and exported (the console)
    ws.audit("base.unpinned", f"base/{digest}", details={"digest": digest, "pinned": False})
    return BaseModel(path, None, digest, False)


def verify_base(ws: Workspace, name: str) -> BaseModel:
    """The registered base ``name``, its files checked against the manifest (exit 3 if not)."""
    from sealtune.sandbox.measurement import digest_tree

    record = _read(_record_path(ws, name), name)
    path = Path(record["path"])
    found = manifest(path) if path.is_dir() else {}
    recorded: dict[str, str] = record["files"]
    changed = sorted(n for n in set(found) | set(recorded) if found.get(n) != recorded.get(n))
    digest = digest_tree(path) if path.is_dir() and not changed else None
    if changed or digest != record.get("digest"):
        ws.audit("base.changed", f"base/{name}", outcome="failure",
                 details={"files": changed[:50], "count": len(changed)})
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        raise IntegrityError(f"base model {name!r} changed since it was added "
                             f"({shown or 'its directory is gone'})",
                             hint="restore the base model's files, or register the new "
                                  "version under a new name after assessing it")
    return BaseModel(path, name, str(digest), True, str(record.get("licence")))


def registered_at(ws: Workspace, path: Path, digest: str | None) -> str | None:
    """The registered name of the base at ``path`` with ``digest``, if there is one."""
    for entry in list_bases(ws):
        if entry["path"] == str(path) and (digest is None or entry["digest"] == digest):
            return str(entry["name"])
    return None


def list_bases(ws: Workspace) -> list[dict[str, Any]]:
    """The registered base models (name, path, licence, digest, added, files), by name."""
    root = ws.area(BASES)
    out = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        record = _read(path, path.stem)
        out.append({k: record.get(k) for k in ("name", "path", "licence", "digest", "added")}
                   | {"files": len(record["files"])})
    return out
