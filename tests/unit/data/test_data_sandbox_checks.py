"""The parent's checks of what the data sandbox hands back, and the worker's wire helpers.

No sandbox runs here: the output directory is prepared as a sandbox that
misbehaves would leave it (real sealed files, real keys), and the checks must
refuse it without quoting anything of the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealtune.data.formats import DataFormatError
from sealtune.data.sandbox_run import DataRun
from sealtune.data.worker import QUARANTINED, SEALED, phase_token
from sealtune.errors import ConfigError, IntegrityError, SealtuneError
from sealtune.keys.sealing import SealedWriter, SealingTarget, new_target
from sealtune.sandbox.spec import SandboxSpec
from sealtune.sandbox.wire import TOKEN_RE
from sealtune.workspace import Workspace


def _run(ws: Workspace) -> DataRun:
    return DataRun(ws, name="ds", progress=None, bwrap="bwrap", tmpfs_size=1 << 20,
                   timeout=None)


def _spec(tmp_path: Path) -> SandboxSpec:
    raw = tmp_path / "raw.jsonl"
    raw.write_text("{}\n")
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return SandboxSpec(output_dir=out, inputs={"raw": raw}, stage="data")


def _seal(path: Path, target: SealingTarget, data: bytes) -> str:
    writer = SealedWriter(path, target=target)
    writer.write(data)
    return writer.close().content_sha256


def _outputs(ws: Workspace, out: Path, targets: dict[str, SealingTarget],
             seal_with: dict[str, SealingTarget] | None = None) -> None:
    files = {}
    for file, role in zip(SEALED, ("data", "quarantine", "keys"), strict=True):
        target = (seal_with or targets)[file]
        files[role] = {"name": file, "file_id": target.file_id,
                       "content_sha256": _seal(out / file, target, b"{}\n")}
    (out / "dataset.json").write_text(json.dumps({"files": files}))
    (out / "findings.json").write_text("{}")
    (out / "bom.cdx.json").write_text("{}")
    (out / QUARANTINED).write_text("[]")


def test_failures_inside_cross_by_class_and_line_only(workspace: Workspace,
                                                      tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    run = _run(workspace)
    run.errors, run.fields = ["DataFormatError"], {"data_error": {"line": 7}}
    with pytest.raises(DataFormatError) as bad:
        run._check(spec)
    assert bad.value.line == 7 and str(spec.inputs["raw"]) in bad.value.message
    run.errors, run.fields = ["ConfigError"], {}
    with pytest.raises(ConfigError, match="failed with ConfigError"):
        run._check(spec)
    run.errors = ["ValueError"]
    with pytest.raises(SealtuneError, match="ValueError"):
        run._check(spec)
    run.errors = []
    with pytest.raises(SealtuneError, match="without sealing its outputs"):
        run._check(spec)
    run.fields, run.teardown = {"outputs_sealed": {}}, {"outputs_removed": 2}
    with pytest.raises(IntegrityError, match="2 unexpected"):
        run._check(spec)
    run.teardown = {"outputs_removed": 0}
    run._check(spec)  # sealed, nothing stray: accepted


def test_only_files_sealed_under_the_parents_targets_are_accepted(
        workspace: Workspace, tmp_path: Path) -> None:
    targets = {f: new_target(workspace.keys, ["k1"]) for f in SEALED}
    others = {f: new_target(workspace.keys, ["k1"]) for f in SEALED}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    _outputs(workspace, foreign, targets, seal_with={**targets, SEALED[0]: others[SEALED[0]]})
    with pytest.raises(IntegrityError, match="not sealed under the key made for it"):
        _run(workspace)._accept(foreign, targets)
    plain = tmp_path / "plain"
    plain.mkdir()
    _outputs(workspace, plain, targets)
    (plain / SEALED[1]).unlink()
    (plain / SEALED[1]).write_bytes(b'{"plaintext": true}\n')
    with pytest.raises(IntegrityError):
        _run(workspace)._accept(plain, targets)
    lying = tmp_path / "lying"
    lying.mkdir()
    _outputs(workspace, lying, targets)
    manifest = json.loads((lying / "dataset.json").read_text())
    manifest["files"]["data"]["content_sha256"] = "0" * 64
    (lying / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="does not describe its sealed files"):
        _run(workspace)._accept(lying, targets)
    good = tmp_path / "good" / "sandbox"
    good.mkdir(parents=True)
    _outputs(workspace, good, targets)
    written = _run(workspace)._accept(good, targets)
    assert written.quarantined == () and not good.exists()
    assert sorted(p.name for p in good.parent.iterdir()) == sorted(
        [*SEALED, "dataset.json", "findings.json", "bom.cdx.json"])


@given(st.text(max_size=300))
def test_any_phase_becomes_a_token_the_wire_accepts(phase: str) -> None:
    assert TOKEN_RE.fullmatch(phase_token(phase))
    assert phase_token("screening, pass 1") == "screening,_pass_1"
