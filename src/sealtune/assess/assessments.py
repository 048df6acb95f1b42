"""The gate's reports kept in the workspace: listed, read, found for one model digest.

Every gate run (:func:`sealtune.assess.run_gate`) keeps its report in
``<workspace>/assessments/<id>/``: ``assessment.json`` (a plain index:
ids, the model, the verdict, the failed probes, the policy digest, the
report's SHA-256, the signing key id, and the sealed files' content
digests), ``report.json.sealed`` and ``report.dsse.json.sealed`` (the
report and its signed DSSE envelope, sealed under the workspace's default
key). :func:`list_assessments` lists them (newest first, optionally for one
model digest); :meth:`Assessment.envelope` and :meth:`Assessment.report`
open the sealed bytes and check them against the index.

What this protects against: a report or envelope swapped or edited in the
workspace (the sealed files are authenticated, and their bytes must have
the SHA-256 and content digests the index records), an index that names
files outside its folder. What it does not: the index itself is unsigned;
trust comes from the envelope's signature, which
:func:`sealtune.evidence.verify_gate_report` checks against pinned keys
(the registry's check is :func:`sealtune.evidence.passing_gate_report`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import ConfigError, IntegrityError

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

__all__ = ["ASSESSMENTS", "Assessment", "list_assessments", "read_assessment"]

#: The workspace folder that holds one folder per gate run.
ASSESSMENTS = "assessments"
INDEX = "assessment.json"
_ID = re.compile(r"^assess-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_FILES = ("report.json.sealed", "report.dsse.json.sealed")


@dataclass(frozen=True)
class Assessment:
    """One gate run kept in the workspace (its index; the sealed files are opened on demand).

    Attributes:
        id: the report's id (``assess-YYYYmmdd-HHMMSS-xxxxxx``).
        root: its folder.
        index: the parsed ``assessment.json``.
    """

    id: str
    root: Path
    index: dict[str, Any]

    @property
    def verdict(self) -> str:
        """``pass`` or ``fail``."""
        return str(self.index["verdict"])

    @property
    def model_digest(self) -> str:
        """``sha256:<hex>`` of the model the report names."""
        return str(self.index["model"]["digest"])

    def _open(self, ws: Workspace, name: str) -> bytes:
        from sealtune.assess._sealing import open_small
        from sealtune.keys.content import labelled_digest

        path = self.root / name
        if labelled_digest(path) != self.index["files"][name]:
            raise IntegrityError(f"{path} is not the file its index records",
                                 hint="restore the assessment folder from a trusted copy")
        return open_small(path, keys=ws.keys)

    def report(self, ws: Workspace) -> bytes:
        """The exact bytes of ``report.json`` (authenticated, and the SHA-256 indexed)."""
        raw = self._open(ws, "report.json.sealed")
        if "sha256:" + hashlib.sha256(raw).hexdigest() != self.index["report_sha256"]:
            raise IntegrityError(f"{self.root}: the report is not the one its index records")
        return raw

    def envelope(self, ws: Workspace) -> bytes:
        """The signed DSSE envelope over the report (verify it with pinned keys)."""
        return self._open(ws, "report.dsse.json.sealed")


def _index(root: Path) -> dict[str, Any]:
    try:
        index = json.loads((root / INDEX).read_text("utf-8"))
    except (OSError, ValueError):
        raise IntegrityError(f"{root / INDEX} is unreadable",
                             hint="restore the assessment folder from a trusted copy") from None
    ok = (isinstance(index, dict) and index.get("format") == "sealtune.assessment/v1"
          and index.get("id") == root.name and index.get("verdict") in ("pass", "fail")
          and isinstance(index.get("model"), dict)
          and isinstance(index["model"].get("digest"), str)
          and isinstance(index.get("report_sha256"), str)
          and isinstance(index.get("files"), dict) and set(index["files"]) == set(_FILES))
    if not ok:
        raise IntegrityError(f"{root / INDEX} is malformed",
                             hint="restore the assessment folder from a trusted copy")
    return dict(index)


def read_assessment(ws: Workspace, assessment_id: str) -> Assessment:
    """The gate run ``assessment_id`` of this workspace.

    Raises:
        ConfigError: no such assessment.
        IntegrityError: its index is unreadable or malformed.
    """
    root = ws.area(ASSESSMENTS) / assessment_id
    if not _ID.match(assessment_id) or not (root / INDEX).is_file():
        raise ConfigError(f"no assessment {assessment_id!r} in {ws.root}",
                          hint="the id is printed by 'sealtune assess' and in report.json")
    return Assessment(assessment_id, root, _index(root))


def list_assessments(ws: Workspace, *, model_digest: str | None = None) -> list[Assessment]:
    """This workspace's gate runs, newest first; only those for ``model_digest`` if given.

    Raises:
        IntegrityError: an index is unreadable or malformed.
    """
    folder = ws.area(ASSESSMENTS)
    if not folder.is_dir():
        return []
    found = [Assessment(p.name, p, _index(p)) for p in folder.iterdir()
             if _ID.match(p.name) and (p / INDEX).is_file()]
    if model_digest is not None:
        found = [a for a in found if a.model_digest == model_digest]
    return sorted(found, key=lambda a: (str(a.index.get("created")), a.id), reverse=True)
